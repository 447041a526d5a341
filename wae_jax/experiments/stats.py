"""Seeds, mean ± std and the rule that turns a comparison over seeds into a check.

Every cell of an experiment (a method, a λ, a (K, τ) pair) is trained with
several seeds; a number is reported as the mean and the sample standard
deviation (ddof 1) over them (`aggregate`).

The rule (`compare`): a check "A is lower than B" compares the means of A's
and B's per-seed values. With d = mean(A) - mean(B) and its standard error
se = sqrt(var(A) / n_A + var(B) / n_B) (unpaired, sample variances), the
check is
  * "held"         when the difference has the claimed sign and |d| > 2 se,
  * "did not hold" when it has the other sign and |d| > 2 se,
  * "inconclusive" otherwise: the margin is inside the spread between seeds.
A constant B (a reference level, e.g. a component's spread) has no variance.
Two standard errors is roughly a 95% two-sided interval for three or more
seeds; with few seeds it is a lenient bar, so "held" means "clear of the
seed noise", not "significant".

An experiment's verdict (`verdict`) from its checks' outcomes:
  * "held":         every check held;
  * "did not hold": no check held and at least one did not hold;
  * "inconclusive": every check is inconclusive;
  * "partly":       otherwise (some held, some did not hold or were inconclusive).
"""

import math
from typing import Dict, Iterable, Sequence, Union

import numpy as np

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
OUTCOMES = (HELD, NOT_HELD, INCONCLUSIVE)
VERDICTS = ("held", "partly", "did not hold", "inconclusive")
STANDARD_ERRORS = 2.0  # the margin a check needs, in standard errors of the difference


def aggregate(values: Iterable[float]) -> dict:
  """{"mean", "std" (ddof 1; 0 for one value), "n", "values"} of per-seed values."""
  values = [float(v) for v in values]
  if not values:
    raise ValueError("aggregate needs at least one value.")
  array = np.asarray(values, np.float64)
  std = float(array.std(ddof=1)) if len(values) > 1 else 0.0
  return {"mean": float(array.mean()), "std": std, "n": len(values), "values": values}


def standard_error(values: Sequence[float]) -> float:
  """Standard error of the mean of per-seed values (0 for a constant or one value)."""
  values = np.asarray(values, np.float64).reshape(-1)
  if values.size < 2:
    return 0.0
  return float(values.std(ddof=1) / math.sqrt(values.size))


def compare(lower: Union[Sequence[float], float], higher: Union[Sequence[float], float],
            ) -> dict:
  """The check "`lower` is below `higher`" over seeds (see the module docstring).

  Args:
    lower: per-seed values claimed to be lower, or a constant.
    higher: per-seed values claimed to be higher, or a constant.

  Returns:
    {"outcome": "held" | "did not hold" | "inconclusive", "difference":
    mean(higher) - mean(lower) (positive when the claim's direction),
    "standard_error": se of that difference, "lower": aggregate, "higher":
    aggregate}.
  """
  a = np.atleast_1d(np.asarray(lower, np.float64))
  b = np.atleast_1d(np.asarray(higher, np.float64))
  difference = float(b.mean() - a.mean())
  error = math.sqrt(standard_error(a) ** 2 + standard_error(b) ** 2)
  if abs(difference) > STANDARD_ERRORS * error and difference != 0.0:
    outcome = HELD if difference > 0 else NOT_HELD
  else:
    outcome = INCONCLUSIVE
  return {"outcome": outcome, "difference": difference, "standard_error": error,
          "lower": aggregate(a), "higher": aggregate(b)}


def verdict(outcomes: Dict[str, str]) -> str:
  """The experiment's verdict from {check: outcome} (see the module docstring)."""
  if not outcomes:
    raise ValueError("A verdict needs at least one check.")
  unknown = set(outcomes.values()) - set(OUTCOMES)
  if unknown:
    raise ValueError(f"Unknown check outcome(s) {sorted(unknown)}; expected {OUTCOMES}.")
  counts = {o: sum(v == o for v in outcomes.values()) for o in OUTCOMES}
  if counts[HELD] == len(outcomes):
    return "held"
  if counts[INCONCLUSIVE] == len(outcomes):
    return "inconclusive"
  if counts[HELD] == 0:
    return "did not hold"
  return "partly"


def mean_std_text(values: Sequence[float], digits: int = 3) -> str:
  """'mean ± std' of per-seed values, rounded to `digits` significant digits."""
  stats = aggregate(values)
  return f"{stats['mean']:.{digits}g} ± {stats['std']:.{digits - 1}g}"
