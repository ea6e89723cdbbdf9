# Train: one job per (size, budget), each budget with its own warmup + cosine schedule.


rule train:
    input:
        rules.restructure.output,
        rules.shards.output,
        rules.tokenizers.output,
    output:
        weights=L.run("{size}", "{steps}", "model.safetensors"),
        config=L.run("{size}", "{steps}", "config.json"),
        train_log=L.run("{size}", "{steps}", "train_log.csv"),
        summary=L.run("{size}", "{steps}", "train_summary.json"),
    conda:
        "../envs/train.yaml"
    log:
        L.log("train", "{size}_steps{steps}"),
    threads: config["train"]["threads"]
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/train.py"
