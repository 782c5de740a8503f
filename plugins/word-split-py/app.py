"""Splits a text field into lower-case words: the Python twin of the Rust `word-split`
plugin, with the same params and the same output."""

from eddy_sdk import FlatMap, PluginError, export_flat_map


class WordSplit(FlatMap):
    def open(self, params):
        self.field = params.get("field", "text")
        self.min_length = int(params.get("min-length", 1))

    def flat_map(self, event):
        text = event.json().get(self.field)
        if not isinstance(text, str):
            raise PluginError(f'no string field "{self.field}"')
        # Like Rust's `str::split` on every non-alphanumeric character: empty pieces
        # between separators count as words shorter than any positive minimum.
        pieces = [[]]
        for c in text:
            if c.isalnum():
                pieces[-1].append(c)
            else:
                pieces.append([])
        for piece in pieces:
            if len(piece) >= self.min_length:
                yield {"word": "".join(piece).lower()}


FlatMapOperator = export_flat_map(WordSplit)
