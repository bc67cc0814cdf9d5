"""seqbench: which sequence models carry information across how long a gap, at what cost.

The public surface::

    import seqbench as sb
    task = sb.make_task("jane-recall", lag=20)
    train, valid, test = task.splits(seed=0)
    model = sb.make_model("lstm", hidden_size=64, random_state=0).fit(train, valid)
    result = sb.evaluate(model, task, test)

``sb.model_registry`` and ``sb.task_registry`` list and register models and tasks in this
process (``names()``, ``get(name)``, ``register(name, cls)``). The built-in classes live
in the subpackages ``seqbench.models`` and ``seqbench.tasks`` (``import seqbench.models``).
"""

from .data import SeqData, TaskSpec
from .errors import IncompatibleError, SeqbenchError
from .evaluate import evaluate
from .registry import make_model, make_task
from .registry import models as model_registry
from .registry import tasks as task_registry

__version__ = "0.1.0"

__all__ = [
    "IncompatibleError",
    "SeqData",
    "SeqbenchError",
    "TaskSpec",
    "__version__",
    "evaluate",
    "make_model",
    "make_task",
    "model_registry",
    "task_registry",
]
