# Evaluate: CE on the held-out UC, ST and SC splits for every run.


rule evaluate:
    input:
        rules.train.output.weights,
        rules.train.output.config,
        rules.test_splits.output,
    output:
        L.run_ce("{size}", "{steps}"),
    conda:
        "../envs/evaluate.yaml"
    log:
        L.log("evaluate", "{size}_steps{steps}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/evaluate.py"
