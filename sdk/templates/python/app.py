"""{{name}}: an Eddy map plugin. Upper-cases the string field `field` (param, default
`text`) of every event and passes the rest through."""

from eddy_sdk import Map, PluginError, export_map


class Plugin(Map):
    def open(self, params):
        self.field = params.get("field", "text")

    def map(self, event):
        value = event.json()
        text = value.get(self.field)
        if not isinstance(text, str):
            raise PluginError(f"no string field {self.field!r}")
        value[self.field] = text.upper()
        return value


MapOperator = export_map(Plugin)
