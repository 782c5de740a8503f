// {{name}}: an Eddy map plugin. Upper-cases the string field `field` (param, default
// `text`) of every event and passes the rest through.

import { exportMap } from './eddy.js';

export class Plugin {
  open(params) {
    this.field = params.field ?? 'text';
  }

  map(event) {
    const value = event.json();
    const text = value[this.field];
    if (typeof text !== 'string') {
      throw new Error(`no string field "${this.field}"`);
    }
    value[this.field] = text.toUpperCase();
    return value;
  }
}

export const mapOperator = exportMap(Plugin);
