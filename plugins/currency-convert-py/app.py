"""Converts order amounts into one target currency: the Python twin of the Rust
`currency-convert` plugin, with the same params and byte-identical output."""

from eddy_sdk import Map, PluginError, export_map, round_half_away


class CurrencyConvert(Map):
    def open(self, params):
        self.target = params.get("target", "EUR")
        self.rates = dict(params["rates"])
        self.rates.setdefault(self.target, 1.0)

    def map(self, event):
        order = event.json()
        currency = order["currency"]
        if currency not in self.rates:
            raise PluginError(f'no exchange rate for currency "{currency}"')
        amount = float(order["amount"])
        return {
            "id": order["id"],
            "customer": order["customer"],
            "amount": round_half_away(amount * self.rates[currency] * 100.0) / 100.0,
            "currency": self.target,
            "original_amount": amount,
            "original_currency": currency,
            "ts": order["ts"],
        }


MapOperator = export_map(CurrencyConvert)
