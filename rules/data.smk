# Data: the world -> CLIP -> embeddings -> FAISS alignment -> Arrow shards and held-out test splits.


rule world:
    output:
        images=L.world("images.parquet"),
        captions=L.world("captions.parquet"),
        corpus=L.world("corpus.parquet"),
        stats=L.world("world_stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("world"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow_scripts/world.py"


rule clip:
    input:
        rules.world.output.images,
        rules.world.output.captions,
    output:
        weights=L.clip("model.safetensors"),
        config=L.clip("clip_config.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("clip"),
    threads: 2
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/clip.py"


rule embed:
    input:
        rules.clip.output.weights,
        rules.world.output.images,
        rules.world.output.corpus,
    output:
        images=L.embeddings("{part}", "images"),
        sentences=L.embeddings("{part}", "sentences"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("embed", "{part}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=GPUS_PER_JOB,
    script:
        "../workflow_scripts/embed.py"


rule align:
    input:
        rules.embed.output.images,
        rules.embed.output.sentences,
        rules.world.output.corpus,
    output:
        alignment=L.alignment("{part}"),
        stats=L.alignment_stats("{part}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("align", "{part}"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow_scripts/align.py"


rule shards:
    input:
        L.alignment("train"),
        rules.world.output.images,
        rules.world.output.captions,
        rules.world.output.corpus,
    output:
        shards=directory(L.shards()),
    conda:
        "../envs/data.yaml"
    log:
        L.log("shards"),
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    script:
        "../workflow_scripts/shards.py"


rule test_splits:
    input:
        L.alignment("heldout"),
        rules.world.output.images,
        rules.world.output.captions,
        rules.world.output.corpus,
    output:
        uc=L.test("UC.parquet"),
        st=L.test("ST.parquet"),
        sc=L.test("SC.parquet"),
        stats=L.test("stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("test_splits"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../workflow_scripts/test_splits.py"


rule benchmarks:
    output:
        commute=directory(L.benchmark("commute")),
        xm3600=directory(L.benchmark("xm3600")),
        stats=L.benchmark("stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("benchmarks"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../workflow_scripts/benchmarks.py"
