// Splits a text field into lower-case words: the JavaScript twin of the Rust
// `word-split` plugin, with the same params and the same output for ASCII separators
// (the engine has no Unicode character classes: beyond ASCII every character counts as
// part of a word, as in the C twin).

import { exportFlatMap } from './eddy.js';

/** Rust's `char::is_alphanumeric` for ASCII; other characters count as letters. */
const SEPARATOR = /[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]/;

class WordSplit {
  open(params) {
    this.field = params.field ?? 'text';
    this.minLength = params['min-length'] ?? 1;
  }

  *flatMap(event) {
    const text = event.json()[this.field];
    if (typeof text !== 'string') {
      throw new Error(`no string field "${this.field}"`);
    }
    // Like Rust's `str::split` on every non-alphanumeric character: empty pieces
    // between separators count as words shorter than any positive minimum.
    for (const piece of text.split(SEPARATOR)) {
      if ([...piece].length >= this.minLength) {
        yield { word: piece.toLowerCase() };
      }
    }
  }
}

export const flatMapOperator = exportFlatMap(WordSplit);
