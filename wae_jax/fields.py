"""Reading, writing and checking dotted config fields ('model.encoder').

A leaf module (it imports only wae_jax.cli), so the method modules, the
evaluator and the config checks can all use it without importing each other.
"""

import math
import numbers
from typing import Any, Sequence

import ml_collections

from wae_jax import cli

_ABSENT = object()


def get(config, field: str, default=None):
  """config's value at a dotted field, or `default` where a part is missing."""
  node = config
  for part in field.split("."):
    if not hasattr(node, "keys") or part not in node:
      return default
    node = node[part]
  return node


def has(config, field: str) -> bool:
  return get(config, field, _ABSENT) is not _ABSENT


def set_value(config: ml_collections.ConfigDict, field: str, value: Any) -> None:
  """config.<field> = value for a dotted field whose parents exist."""
  *parents, leaf = field.split(".")
  node = config
  for part in parents:
    node = node[part]
  node[leaf] = value


def _range_text(low, high, low_open, high_open, integer) -> str:
  kind = "an integer" if integer else "a finite number"
  if low is not None and high is not None:
    return f"{kind} in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
  if low is not None:
    return f"{kind} {'>' if low_open else '>='} {low}"
  if high is not None:
    return f"{kind} {'<' if high_open else '<='} {high}"
  return kind


def check_number(config: ml_collections.ConfigDict, field: str, *, low=None, high=None,
                 low_open: bool = False, high_open: bool = False,
                 integer: bool = False) -> None:
  """cli.UserError unless config.<field> is a finite (integer) number in the range.

  A field the config does not have is not checked.
  """
  value = get(config, field, default=_ABSENT)
  if value is _ABSENT:
    return
  ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
        and math.isfinite(value) and (not integer or float(value).is_integer()))
  if ok and low is not None:
    ok = value > low if low_open else value >= low
  if ok and high is not None:
    ok = value < high if high_open else value <= high
  if not ok:
    raise cli.UserError(
        f"config.{field} must be {_range_text(low, high, low_open, high_open, integer)}, "
        f"got {value!r}; set --config.{field}=<value>.")


def check_widths(config: ml_collections.ConfigDict, field: str) -> None:
  """cli.UserError unless config.<field> is a non-empty tuple of integers >= 1
  (a field the config does not have is not checked)."""
  value = get(config, field, default=_ABSENT)
  if value is _ABSENT:
    return
  ok = isinstance(value, (tuple, list)) and len(value) > 0 and all(
      isinstance(v, numbers.Integral) and not isinstance(v, bool) and v >= 1 for v in value)
  if not ok:
    raise cli.UserError(
        f"config.{field} must be a non-empty tuple of layer widths >= 1, got {value!r}; "
        f"set e.g. --config.{field}='(256, 256)'.")


def check_choice(config: ml_collections.ConfigDict, field: str, allowed: Sequence[str]) -> None:
  """cli.UserError unless config.<field> is one of `allowed` (a field it lacks is not checked)."""
  value = get(config, field, default=_ABSENT)
  if value is not _ABSENT and value not in allowed:
    raise cli.UserError(
        f"Unknown config.{field} {value!r}; use one of {', '.join(allowed)}.")
