# Data: the world -> CLIP -> embeddings -> FAISS alignment -> Arrow shards and held-out test splits. The alignment
# and the test splits are the cc12m world's code, the world being one image slice and one corpus chunk.


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
    benchmark:
        L.stage_time("world"),
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
    benchmark:
        L.stage_time("clip"),
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
    benchmark:
        L.stage_time("embed", "{part}"),
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
        rules.world.output.images,
        rules.world.output.corpus,
    output:
        alignment=L.alignment("{part}"),
        stats=L.alignment_stats("{part}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("align", "{part}"),
    benchmark:
        L.stage_time("align", "{part}"),
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
    benchmark:
        L.stage_time("shards"),
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
    output:
        uc=L.test("UC.parquet"),
        st=L.test("ST.parquet"),
        sc=L.test("SC.parquet"),
        stats=L.test("stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("test_splits"),
    benchmark:
        L.stage_time("test_splits"),
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
        multi30k=directory(L.benchmark("multi30k")),
        coco=directory(L.benchmark("coco")),
        stats=L.benchmark("stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("benchmarks"),
    benchmark:
        L.stage_time("benchmarks"),
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../workflow_scripts/benchmarks.py"
