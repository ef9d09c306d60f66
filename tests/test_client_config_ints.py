"""The trainer client sends config integers JSON clients cannot hold exactly as text (16.9).

The monitor refuses integers beyond +-(2^53-1) inside a run config (422); a trainer YAML with a
64-bit seed must not cost the whole run, so the client sends such a number as its decimal text.
"""

from __future__ import annotations

from trainer_client.payload import encode_tree


def test_big_config_integers_become_their_decimal_text() -> None:
    config = {"seed": 2**63 - 1, "neg": -(2**53), "ok": 2**53 - 1, "flag": True, "nested": [2**64]}
    assert encode_tree(config) == {"seed": str(2**63 - 1), "neg": str(-(2**53)), "ok": 2**53 - 1, "flag": True,
                                   "nested": [str(2**64)]}
