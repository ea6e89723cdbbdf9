# Evaluate: CE on the held-out UC, ST and SC splits for every run.


rule evaluate:
    input:
        rules.train.output.weights,
        rules.train.output.config,
        rules.test_splits.output,
        rules.tokenizers.output,
    output:
        L.run_ce("{size}", "{steps}"),
    conda:
        "../envs/evaluate.yaml"
    log:
        L.log("evaluate", "{size}_steps{steps}"),
    benchmark:
        L.stage_time("evaluate", "{size}_steps{steps}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/evaluate.py"


# Zero-shot captioning on XM3600 (the world's analogue, or the public one in the cc12m world) with and
# without a language prefix (Figure 4).
rule prefix_eval:
    input:
        rules.train.output.weights,
        rules.train.output.config,
        rules.tokenizers.output,
        rules.benchmarks.output.xm3600,
    output:
        L.run_prefix("{size}", "{steps}"),
    conda:
        "../envs/evaluate.yaml"
    log:
        L.log("prefix_eval", "{size}_steps{steps}"),
    benchmark:
        L.stage_time("prefix_eval", "{size}_steps{steps}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/prefix_eval.py"
