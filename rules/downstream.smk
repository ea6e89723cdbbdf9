# Downstream (Table 2): fine-tune each size's largest-budget run on a mix with every task in every
# language, then score the pretrained and the fine-tuned model on the benchmarks.
wildcard_constraints:
    stage="|".join(DOWNSTREAM_STAGES),


# The mix with every task in every language: new world scenes, or the cc12m world's local Multi30K, COCO
# Karpathy, Image Paragraph and DOCCI copies (configured under cc12m.finetune) with NLLB translations.
rule finetune_data:
    input:
        finetune_sources,
    output:
        shards=directory(L.finetune_shards()),
    conda:
        "../envs/data.yaml"
    log:
        L.log("finetune_data"),
    benchmark:
        L.stage_time("finetune_data"),
    threads: 1 if WORLD == "synthetic" else 4
    resources:
        mem_mb=2000 if WORLD == "synthetic" else 32000,
        runtime=30 if WORLD == "synthetic" else 1440,
        gpu=0 if WORLD == "synthetic" else GPUS_PER_JOB,
    script:
        "../workflow_scripts/finetune_data.py"


# As `train`: torchrun over the job's GPUs (one CPU process without), FSDP for train.fsdp_sizes.
rule finetune:
    input:
        L.run("{size}", MAX_STEPS, "model.safetensors"),
        L.run("{size}", MAX_STEPS, "config.json"),
        rules.finetune_data.output,
        rules.tokenizers.output,
        config=ancient(STUDY_CONFIG),
    output:
        weights=L.finetuned("{size}", "model.safetensors"),
        config=L.finetuned("{size}", "config.json"),
        train_log=L.finetuned("{size}", "train_log.csv"),
        summary=L.finetuned("{size}", "train_summary.json"),
    params:
        python=PYTHON,
    conda:
        "../envs/train.yaml"
    log:
        L.log("finetune", "{size}"),
    benchmark:
        L.stage_time("finetune", "{size}"),
    threads: config["finetune"]["threads"] * max(1, GPUS_PER_JOB)
    resources:
        mem_mb=lambda wildcards: checkpoint_mem_mb(L.run(wildcards.size, MAX_STEPS), 1.5 * max(1, GPUS_PER_JOB)),
        runtime=config["finetune"]["runtime_minutes"],
        gpu=GPUS_PER_JOB,
        cpus_per_gpu=config["finetune"]["threads"],
    shell:
        "{params.python:q} -m torch.distributed.run --standalone --nnodes 1"
        " --nproc_per_node $(( {resources.gpu} > 0 ? {resources.gpu} : 1 ))"
        " -m florenz_lib finetune --configfile {input.config:q} --size {wildcards.size} > {log:q} 2>&1"


rule downstream_eval:
    input:
        downstream_model,
        rules.tokenizers.output,
        rules.benchmarks.output,
        public_benchmark_paths,
    output:
        L.downstream("{size}", "{stage}"),
    conda:
        "../envs/evaluate.yaml"
    log:
        L.log("downstream_eval", "{size}_{stage}"),
    benchmark:
        L.stage_time("downstream_eval", "{size}_{stage}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/downstream_eval.py"


rule downstream_table:
    input:
        expand(L.downstream("{size}", "{stage}"), size=SIZES, stage=DOWNSTREAM_STAGES),
    output:
        downstream=report(
            L.table("downstream.csv"),
            caption="../report/downstream.rst",
            category="Downstream",
            subcategory="Tables",
        ),
        downstream_md=L.table("downstream.md"),
        skipped=report(
            L.table("downstream_skipped.csv"),
            caption="../report/downstream_skipped.rst",
            category="Downstream",
            subcategory="Tables",
        ),
        skipped_md=L.table("downstream_skipped.md"),
        figure=report(
            L.figures("downstream.png"),
            caption="../report/downstream_figure.rst",
            category="Downstream",
            subcategory="Figures",
        ),
    conda:
        "../envs/report.yaml"
    log:
        L.log("downstream_table"),
    benchmark:
        L.stage_time("downstream_table"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    script:
        "../workflow_scripts/downstream_table.py"
