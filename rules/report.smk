# Report: runs and models tables, law 1 and law 2 fits, figures.


rule tables:
    input:
        expand(L.model_stats("{size}"), size=SIZES),
        expand(L.initial_ce("{size}"), size=SIZES),
        expand(L.run_ce("{size}", "{steps}"), size=SIZES, steps=BUDGETS),
    output:
        runs=L.table("runs.csv"),
        runs_md=L.table("runs.md"),
        models=L.table("models.csv"),
        models_md=L.table("models.md"),
    conda:
        "../envs/report.yaml"
    log:
        L.log("tables"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/tables.py"


rule report:
    input:
        rules.tables.output.runs,
    output:
        law1=L.table("law1.csv"),
        law1_md=L.table("law1.md"),
        law2=L.table("law2.csv"),
        law2_md=L.table("law2.md"),
        figures=expand(L.figures("law{law}_{split}.png"), law=[1, 2], split=["UC", "ST", "SC"]),
    conda:
        "../envs/report.yaml"
    log:
        L.log("report"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/report.py"
