"""The stages of a run over one run directory: extract, evaluate (CV), train, apply, explain, report.

Each stage is a function of a :class:`Run`; :func:`run_stages` chains them and skips the ones
the manifest records as finished, which is what makes ``upscale run`` resumable. Library code
reports progress through a :class:`Reporter` and never prints.

- :mod:`upscale.pipeline.run`: the run, its directory, log and summary;
- :mod:`upscale.pipeline.stages`: the site stages, explain and report;
- :mod:`upscale.pipeline.domain`: the apply stage and its domain;
- :mod:`upscale.pipeline.commands`: what the commands call.
"""

from upscale.pipeline.commands import execute, explain_run, run_stages, stages_through, validate
from upscale.pipeline.domain import ApplyDomain, apply_domain, apply_index, stage_apply
from upscale.pipeline.run import STAGES, Reporter, Run, open_run, run_log, same_results, summary
from upscale.pipeline.stages import site_data, stage_evaluate, stage_explain, stage_extract, stage_report, stage_train

__all__ = [
    "STAGES",
    "ApplyDomain",
    "Reporter",
    "Run",
    "apply_domain",
    "apply_index",
    "execute",
    "explain_run",
    "open_run",
    "run_log",
    "run_stages",
    "same_results",
    "site_data",
    "stage_apply",
    "stage_evaluate",
    "stage_explain",
    "stage_extract",
    "stage_report",
    "stage_train",
    "stages_through",
    "summary",
    "validate",
]
