# Models: tokenizers and base checkpoints (where they come from is the world's: trained on the synthetic
# world, read from local published checkpoints in the cc12m world) -> restructure (FVT, gated cross
# attention) -> P, Pt, F and T. Every rule from `restructure` on is the same in both worlds.

if WORLD == "synthetic":

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
            L.stage_time("tokenizers")
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
            L.stage_time("pretrain_florence2", "{base}")
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
            L.stage_time("pretrain_gemma2", "{base}")
        threads: 1
        resources:
            mem_mb=4000,
            runtime=120,
            gpu=GPUS_PER_JOB,
        script:
            "../workflow_scripts/pretrain_gemma2.py"

else:
    CHECKPOINTS = config["cc12m"]["checkpoints"]

    # Florence-2's BART tokenizer (plus an <image> placeholder) for the encoder, Gemma-2's for the decoder.
    rule tokenizers:
        input:
            florence=config["cc12m"]["tokenizers"]["florence"],
            gemma=config["cc12m"]["tokenizers"]["gemma"],
        output:
            encoder=L.tokenizers("encoder.json"),
            decoder=L.tokenizers("decoder.json"),
        conda:
            "../envs/models.yaml"
        log:
            L.log("tokenizers"),
        benchmark:
            L.stage_time("tokenizers")
        threads: 1
        resources:
            mem_mb=4000,
            runtime=15,
        script:
            "../workflow_scripts/tokenizers.py"

    # A published Florence-2 (remote-code or transformers-native layout) in the native layout, once.
    rule convert_florence2:
        input:
            lambda wildcards: CHECKPOINTS["florence"][wildcards.base],
        output:
            model=directory(L.florence_base("{base}")),
        conda:
            "../envs/models.yaml"
        log:
            L.log("convert_florence2", "{base}"),
        benchmark:
            L.stage_time("convert_florence2", "{base}")
        threads: 1
        resources:
            mem_mb=lambda wildcards: checkpoint_mem_mb(CHECKPOINTS["florence"][wildcards.base], 2.0),
            runtime=30,
        script:
            "../workflow_scripts/convert_florence2.py"

    # Gemma-2 is already in the Hugging Face layout: validated and linked, not copied.
    rule convert_gemma2:
        input:
            lambda wildcards: CHECKPOINTS["gemma"][wildcards.base],
        output:
            model=directory(L.gemma_base("{base}")),
        conda:
            "../envs/models.yaml"
        log:
            L.log("convert_gemma2", "{base}"),
        benchmark:
            L.stage_time("convert_gemma2", "{base}")
        threads: 1
        resources:
            mem_mb=1000,
            runtime=10,
        script:
            "../workflow_scripts/convert_gemma2.py"


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
        # the bases are read once in their stored dtype and the new model is built on the meta device
        mem_mb=lambda wildcards: checkpoint_mem_mb(base_dirs(wildcards), 1.5),
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
        rules.tokenizers.output,
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
