# The run's config: what the user gave, validated as given (see the Snakefile's header).
# Included first, before anything reads the config.

import copy

import jsonschema
import yaml
from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

CONFIG_SCHEMA = "../schemas/config.schema.yaml"


def missing_keys(config):
    """The required keys ``config`` leaves out, dotted (``scarches.totalvi.n_latent``)."""
    with open(workflow.source_path(CONFIG_SCHEMA)) as stream:
        schema = yaml.safe_load(stream)
    validator = jsonschema.validators.validator_for(schema)(schema)
    missing = [
        ".".join([*map(str, error.path), key])
        for error in validator.iter_errors(config)
        if error.validator == "required"
        for key in error.validator_value
        if key not in error.instance
    ]
    return list(dict.fromkeys(missing))  # schema branches may repeat a requirement


if workflow.overwrite_configfiles:
    # What the user gave (their files, then --config), not layered on the default.
    config.clear()
    config.update(copy.deepcopy(workflow.config_settings.overwrite_config))
try:
    validate(config, CONFIG_SCHEMA)
except WorkflowError as error:
    given = " ".join(map(str, workflow.overwrite_configfiles)) or "config/config.yaml"
    missing = missing_keys(config)
    raise WorkflowError(
        f"the config of this run ({given}, then any --config) is invalid"
        + (f"; it leaves out {', '.join(missing)}" if missing else "")
        + ". A --configfile replaces config/config.yaml, so it must hold every key of the "
        "studies it lists: copy config/config.yaml and edit it, or list the default first "
        f"(--configfile config/config.yaml yours.yaml).\n{error}"
    ) from None
