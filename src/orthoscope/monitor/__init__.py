"""Watch post-training as it happens: `Monitor` measures a model in training against its base.

Layered above `pipeline` (it runs compare's per-matrix job on a live model) and below
`integrations` (the transformers callback) and `lab` (which monitors its own training).
"""

from orthoscope.monitor.live import MonitorError, live_checkpoint
from orthoscope.monitor.monitor import MONITOR_METRICS, MONITOR_PAIR_DRAWS, Monitor
from orthoscope.monitor.step import LOGGED, StepResult

__all__ = ["LOGGED", "MONITOR_METRICS", "MONITOR_PAIR_DRAWS", "Monitor", "MonitorError", "StepResult",
           "live_checkpoint"]
