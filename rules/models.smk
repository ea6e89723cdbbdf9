# Models: tokenizers -> base pretraining -> restructure (FVT, gated cross attention) -> P, Pt, F and T.


rule tokenizers:
    input:
        rules.world.output.captions,
        rules.world.output.corpus,
    output:
        encoder=L.tokenizers("encoder.json"),
        decoder=L.tokenizers("decoder.json"),
    conda:
        "../envs/models.yaml"
    log:
        L.log("tokenizers"),
    benchmark:
        L.stage_time("tokenizers"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../workflow_scripts/tokenizers.py"


rule pretrain_florence2:
    input:
        rules.tokenizers.output.encoder,
        rules.world.output.images,
        rules.world.output.captions,
    output:
        model=directory(L.florence_base("{base}")),
        train_log=L.florence_base("{base}") + "_train_log.csv",
    conda:
        "../envs/models.yaml"
    log:
        L.log("pretrain_florence2", "{base}"),
    benchmark:
        L.stage_time("pretrain_florence2", "{base}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/pretrain_florence2.py"


rule pretrain_gemma2:
    input:
        rules.tokenizers.output.decoder,
        rules.world.output.captions,
        rules.world.output.corpus,
    output:
        model=directory(L.gemma_base("{base}")),
        train_log=L.gemma_base("{base}") + "_train_log.csv",
    conda:
        "../envs/models.yaml"
    log:
        L.log("pretrain_gemma2", "{base}"),
    benchmark:
        L.stage_time("pretrain_gemma2", "{base}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=120,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/pretrain_gemma2.py"


rule restructure:
    input:
        base_dirs,
        rules.tokenizers.output.encoder,
        rules.tokenizers.output.decoder,
    output:
        config=L.init_model("{size}", "config.json"),
        weights=L.init_model("{size}", "model.safetensors"),
    conda:
        "../envs/models.yaml"
    log:
        L.log("restructure", "{size}"),
    benchmark:
        L.stage_time("restructure", "{size}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    script:
        "../workflow_scripts/restructure.py"


rule model_stats:
    input:
        rules.restructure.output,
    output:
        L.model_stats("{size}"),
    conda:
        "../envs/models.yaml"
    log:
        L.log("model_stats", "{size}"),
    benchmark:
        L.stage_time("model_stats", "{size}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    script:
        "../workflow_scripts/model_stats.py"


rule initial_loss:
    input:
        rules.restructure.output,
        rules.test_splits.output,
    output:
        L.initial_ce("{size}"),
    conda:
        "../envs/models.yaml"
    log:
        L.log("initial_loss", "{size}"),
    benchmark:
        L.stage_time("initial_loss", "{size}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/initial_loss.py"
