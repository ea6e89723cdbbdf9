# The Florenz study as one DAG: data -> models -> train -> evaluate -> report (see README.md).
# The default study; --configfile FILE overrides any of its keys.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"


# A world decides only the data rules (shards, test splits, benchmark files) and where the base
# checkpoints and tokenizers come from (rules/models.smk); every later rule is the same in both.
if WORLD == "cc12m":
    include: "rules/cc12m.smk"
else:
    include: "rules/data.smk"


include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/downstream.smk"
include: "rules/report.smk"


rule all:
    input:
        ALL_TARGETS,
    default_target: True
