"""Datasets: the user's labelled files and the demo sets edgeptm can fetch."""

from edgeptm.data.text import TextDataset, read_text_table, seeded_split

__all__ = ["TextDataset", "read_text_table", "seeded_split"]
