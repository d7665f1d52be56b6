"""Cost of a model, measured in the process that measured its quality.

Every figure states its unit and the hardware it was taken on (:func:`fingerprint`).
:func:`measure` assembles a run record's ``cost`` block; each part is usable on its own:

* :func:`parameter_counts`, :func:`fp16_size` (``sizes``): params per component, trainable
  vs frozen; bytes of the state dict saved in half precision;
* :func:`count_flops`, :func:`fvcore_macs` (``flops``): FLOPs and MACs per component at the
  run's input shape, and fvcore's count for cross-checking;
* :func:`time_stage`, :func:`throughput`, :func:`latency`, :func:`run_stages` (``timing``):
  timm's benchmark protocol (warm-up, device synchronised after every call, inference mode,
  declared precision and memory format) with the number of iterations adapted to a time
  budget, and the extra timed stages a task declares (:class:`vlbench.types.CostStage`);
* :func:`peak_memory`, :func:`inference_memory`, :func:`train_step_memory` (``memory``): peak
  bytes of an inference forward and of a training step;
* :func:`fingerprint` (``environment``): the hardware and software of every figure;
* :func:`check_cost_invariants` (``invariants``): what must hold in every cost block.

``inputs`` holds the synthetic inputs and the objective's forward that every measurement
shares (:func:`synthetic_images`, :func:`inference_forward`, ...). docs/cost.md explains every field.
"""

from vlbench.cost.block import measure
from vlbench.cost.environment import fingerprint
from vlbench.cost.flops import FLOP_CONVENTION, FVCORE_TOLERANCE, count_component, count_flops, fvcore_macs
from vlbench.cost.inputs import inference, inference_forward, synthetic_images
from vlbench.cost.invariants import check_cost_invariants
from vlbench.cost.memory import inference_memory, peak_memory, train_step_memory
from vlbench.cost.sizes import FP16_TOLERANCE, MB, fp16_size, parameter_counts
from vlbench.cost.timing import TIMING_PROTOCOL, latency, run_stages, throughput, time_stage
from vlbench.types.tasks import CostStage

__all__ = [
    "FLOP_CONVENTION",
    "FP16_TOLERANCE",
    "FVCORE_TOLERANCE",
    "MB",
    "TIMING_PROTOCOL",
    "CostStage",
    "check_cost_invariants",
    "count_component",
    "count_flops",
    "fingerprint",
    "fp16_size",
    "fvcore_macs",
    "inference",
    "inference_forward",
    "inference_memory",
    "latency",
    "measure",
    "parameter_counts",
    "peak_memory",
    "run_stages",
    "synthetic_images",
    "throughput",
    "time_stage",
    "train_step_memory",
]
