# The Florenz study as one DAG: data -> models -> train -> evaluate -> report (see README.md).
# The default study; --configfile FILE overrides any of its keys.
configfile: os.path.join(workflow.basedir, "config.yaml")


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/models.smk"
include: "rules/train.smk"
include: "rules/evaluate.smk"
include: "rules/report.smk"


rule all:
    input:
        L.table("runs.csv"),
        L.table("models.csv"),
        L.table("law1.csv"),
        L.table("law2.csv"),
        L.table("prefix.csv"),
    default_target: True
