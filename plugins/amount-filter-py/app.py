"""Keeps the events whose numeric field reaches a minimum: the Python twin of the Rust
`amount-filter` plugin, with the same params and the same output."""

from eddy_sdk import Filter, PluginError, export_filter


class AmountFilter(Filter):
    def open(self, params):
        self.field = params.get("field", "amount")
        self.min = float(params["min"])
        self.strict = bool(params.get("strict", False))

    def filter(self, event):
        value = event.json().get(self.field)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value >= self.min
        if self.strict:
            raise PluginError(f'field "{self.field}" is missing or not a number')
        return False


FilterOperator = export_filter(AmountFilter)
