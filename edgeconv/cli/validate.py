"""``edgeconv validate``: :func:`edgeconv.verify.validate.validate` on a folder or one artifact; exit 1 on FAIL."""
from __future__ import annotations

import click

from edgeconv.cli.params import debug_option, model_file_flags, native_output, validation_flags, validation_options

__all__ = ["validate"]


@click.command()
@click.argument("path", type=click.Path())
@validation_flags
@click.option("--layers", is_flag=True, help="Also compare every TFLite tensor with the Keras layer outputs.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Processes that run each artifact on shards of the inputs (large --data); same figures as one.")
@click.option("--ray", "ray_address", metavar="ADDRESS|auto",
              help="Run the --jobs shards as tasks on this Ray cluster (edgeconv[ray]).")
@model_file_flags
@debug_option
def validate(path, data, samples, atol, min_sqnr, min_top1, labels, layers, seed, jobs, ray_address, custom_objects,
             unsafe_deserialization):
    """Validate an export folder (or one artifact in it) against its Keras reference: exit 0 pass, 1 fail.

    The reference reloads with the custom objects the export recorded (when unchanged) or --custom-objects; Lambda
    layers need --unsafe-deserialization again."""
    from edgeconv.cli.output import print_validation
    from edgeconv.errors import ValidationFailed
    from edgeconv.verify.validate import validate as run_validation

    opts = validation_options(data, samples, atol, min_sqnr, min_top1, labels, layers=layers, seed=seed, jobs=jobs,
                              ray=ray_address, custom_objects=tuple(custom_objects), unsafe_deserialization=unsafe_deserialization)
    with native_output():
        report = run_validation(path, opts)
    print_validation(report)
    if not report.passed:
        raise ValidationFailed(f"validation failed: {report.summary_line()}")
