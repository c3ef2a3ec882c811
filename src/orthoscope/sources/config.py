"""Numbers from a model's config, checked before they cut a tensor.

A config number that is a string, zero, negative or a fraction, or one that contradicts the
shapes it implies (heads that do not divide a fused tensor's rows, a block size that does
not match its scale grid), would split or dequantize weights wrongly without a word: every
such number goes through `positive_int` and the shape checks of its reader, and a bad one
is one line naming the config and the tensor.
"""

from __future__ import annotations

from orthoscope.errors import SourceError


def positive_int(config: dict, key: str, where: str, default: object = None) -> int | None:
    """`config[key]` (or `default`) as a positive int; None when both are absent; else SourceError.

    >>> positive_int({"num_attention_heads": 4}, "num_attention_heads", "config.json")
    4
    >>> positive_int({"num_attention_heads": "4"}, "num_attention_heads", "config.json")
    Traceback (most recent call last):
    orthoscope.errors.SourceError: config.json: num_attention_heads is '4', not a positive integer
    """
    value = config.get(key)
    if value is None:
        value = default
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise SourceError(f"{where}: {key} is {_shown(value)}, not a positive integer")
    return value


def block_size(config: dict, where: str, default: tuple[int, int] = (128, 128)) -> tuple[int, int]:
    """`quantization_config.weight_block_size` as two positive ints (`default` when absent).

    >>> block_size({"quantization_config": {"weight_block_size": [128, 128]}}, "config.json")
    (128, 128)
    >>> block_size({"quantization_config": {"weight_block_size": [0, 128]}}, "config.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.SourceError: config.json: quantization_config.weight_block_size is [0, 128], not two positive ...
    """
    quantization = config.get("quantization_config") or {}
    value = quantization.get("weight_block_size") if isinstance(quantization, dict) else None
    if value is None:
        return default
    if not isinstance(value, (list, tuple)) or len(value) != 2 or any(
            isinstance(v, bool) or not isinstance(v, int) or v <= 0 for v in value):
        raise SourceError(f"{where}: quantization_config.weight_block_size is {_shown(value)}, "
                          "not two positive integers")
    return int(value[0]), int(value[1])


def check_scale_grid(shape: tuple[int, ...], scale_shape: tuple[int, ...], block: tuple[int, int], tensor: str,
                     where: str) -> None:
    """Refuse a block-FP8 scale whose grid is not ceil(rows / block) x ceil(cols / block).

    >>> check_scale_grid((256, 512), (2, 4), (128, 128), "w", "config.json")
    >>> check_scale_grid((256, 512), (2, 4), (64, 64), "w", "config.json")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    orthoscope.errors.SourceError: config.json: weight_block_size [64, 64] implies a 4 x 8 scale grid for w ...
    """
    expected = (-(-shape[0] // block[0]), -(-shape[1] // block[1]))
    if tuple(scale_shape) != expected:
        raise SourceError(f"{where}: weight_block_size [{block[0]}, {block[1]}] implies a {expected[0]} x "
                          f"{expected[1]} scale grid for {tensor} ({shape[0]} x {shape[1]}), but its scale is "
                          f"{' x '.join(map(str, scale_shape))}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
