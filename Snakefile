# The Florenz study as one DAG: data -> models -> train -> evaluate -> report (see README.md).
# The default study; --configfile FILE overrides any of its keys.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"


if WORLD == "cc12m":
    # the paper's pretraining data at scale; the model rules need local base checkpoints (not yet wired)
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
