# Report: runs and models tables, law 1 and law 2 fits, figures.
# Outputs flagged report() (captions in report/) make up `snakemake --report results/report.html`.

report: "../report/workflow.rst"

from florenz_lib import report_directives

report_directives.register()  # `.. florenz-figure::` in report/workflow.rst

REPORT_SPLITS = ["UC", "ST", "SC"]


rule tables:
    input:
        expand(L.model_stats("{size}"), size=SIZES),
        expand(L.initial_ce("{size}"), size=SIZES),
        expand(L.run_ce("{size}", "{steps}"), size=SIZES, steps=BUDGETS),
    output:
        runs=report(
            L.table("runs.csv"),
            caption="../report/runs.rst",
            category="Runs",
            subcategory="Tables",
        ),
        runs_md=L.table("runs.md"),
    conda:
        "../envs/report.yaml"
    log:
        L.log("tables"),
    benchmark:
        L.stage_time("tables"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/tables.py"


rule models_table:
    input:
        expand(L.model_stats("{size}"), size=SIZES),
    output:
        models=report(
            L.table("models.csv"),
            caption="../report/models.rst",
            category="Runs",
            subcategory="Tables",
        ),
        models_md=L.table("models.md"),
    conda:
        "../envs/report.yaml"
    log:
        L.log("models_table"),
    benchmark:
        L.stage_time("models_table"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    script:
        "../workflow_scripts/models_table.py"


rule report:
    input:
        rules.tables.output.runs,
    output:
        law1=report(
            L.table("law1.csv"),
            caption="../report/law1.rst",
            category="Law 1",
            subcategory="Tables",
        ),
        law1_md=L.table("law1.md"),
        law2=report(
            L.table("law2.csv"),
            caption="../report/law2.rst",
            category="Law 2",
            subcategory="Tables",
        ),
        law2_md=L.table("law2.md"),
        law2_contrasts=report(
            L.table("law2_contrasts.csv"),
            caption="../report/law2_contrasts.rst",
            category="Law 2",
            subcategory="Tables",
        ),
        law2_contrasts_md=L.table("law2_contrasts.md"),
        law2_diagnostics=report(
            L.table("law2_diagnostics.csv"),
            caption="../report/law2_diagnostics.rst",
            category="Law 2",
            subcategory="Tables",
        ),
        law2_diagnostics_md=L.table("law2_diagnostics.md"),
        law2_bootstrap=report(
            L.table("law2_bootstrap.csv"),
            caption="../report/law2_bootstrap.rst",
            category="Law 2",
            subcategory="Tables",
        ),
        law2_bootstrap_md=L.table("law2_bootstrap.md"),
        extrapolation=report(
            L.table("extrapolation.csv"),
            caption="../report/extrapolation.rst",
            category="Extrapolation",
            subcategory="Tables",
        ),
        extrapolation_md=L.table("extrapolation.md"),
        law2_holdout=report(
            L.table("law2_holdout.csv"),
            caption="../report/law2_holdout.rst",
            category="Extrapolation",
            subcategory="Tables",
        ),
        law2_holdout_md=L.table("law2_holdout.md"),
        law1_figures=[
            report(
                L.figures(f"law1_{split}.png"),
                caption="../report/law1_figure.rst",
                category="Law 1",
                subcategory="Figures",
                labels={"split": split, "figure": "law 1"},
            )
            for split in REPORT_SPLITS
        ],
        law2_figures=[
            report(
                L.figures(f"law2_{split}.png"),
                caption="../report/law2_figure.rst",
                category="Law 2",
                subcategory="Figures",
                labels={"split": split, "figure": "law 2"},
            )
            for split in REPORT_SPLITS
        ],
    conda:
        "../envs/report.yaml"
    log:
        L.log("report"),
    benchmark:
        L.stage_time("report"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/report.py"


rule prefix_table:
    input:
        expand(L.run_prefix("{size}", "{steps}"), size=SIZES, steps=BUDGETS),
    output:
        prefix=report(
            L.table("prefix.csv"),
            caption="../report/prefix.rst",
            category="Language prefix",
            subcategory="Tables",
        ),
        prefix_md=L.table("prefix.md"),
        figure=report(
            L.figures("prefix.png"),
            caption="../report/prefix_figure.rst",
            category="Language prefix",
            subcategory="Figures",
        ),
    conda:
        "../envs/report.yaml"
    log:
        L.log("prefix_table"),
    benchmark:
        L.stage_time("prefix_table"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/prefix_table.py"


# Last: after every other result of the run, gather the jobs' benchmark files (wall time, peak RSS).
rule stage_times:
    input:
        rules.tables.output.runs,
        rules.models_table.output.models,
        rules.report.output.law1,
        rules.prefix_table.output.prefix,
        rules.downstream_table.output.downstream,
    output:
        stage_times=report(
            L.table("stage_times.csv"),
            caption="../report/stage_times.rst",
            category="Run",
            subcategory="Tables",
        ),
        stage_times_md=L.table("stage_times.md"),
        jobs=L.table("stage_time_jobs.csv"),
        jobs_md=L.table("stage_time_jobs.md"),
        figure=report(
            L.figures("stage_times.png"),
            caption="../report/stage_times_figure.rst",
            category="Run",
            subcategory="Figures",
        ),
    conda:
        "../envs/report.yaml"
    log:
        L.log("stage_times"),
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../workflow_scripts/stage_times.py"
