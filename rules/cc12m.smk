# Data of the cc12m world: the paper's pretraining data from local files, in slices and chunks that
# SLURM runs as parallel jobs. TSV -> img2dataset download (per slice) -> NLLB captions (per slice);
# CCMatrix -> filtered, hash-partitioned corpus (per language); open_clip embeddings (per slice and
# per corpus chunk); streamed FAISS alignment (per part); shards (per slice, then gathered); held-out
# UC/ST/SC test splits; stats.json reconciling every count; the benchmark files. Writes what the synthetic
# world's data rules write (data/shards, data/test, data/benchmarks), so the later rules read the same files.
CC12M = config["cc12m"]
from florenz_lib.config import missing_cc12m_paths

if missing_cc12m_paths(config):
    raise WorkflowError("the cc12m world's inputs are missing:\n  " + "\n  ".join(missing_cc12m_paths(config)))
SLICES = [f"{i:05d}" for i in range(CC12M["n_slices"])]
CORPUS_LANGS = list(CC12M["corpus"]["files"])
CHUNKS = [f"{c:03d}" for c in range(CC12M["corpus"]["n_chunks"])]
SENTENCE_CHUNKS = [(lang, chunk) for lang in CORPUS_LANGS for chunk in CHUNKS]
# GPU for the model stages (NLLB, CLIP) and FAISS; 0 on a laptop
CC12M_GPUS = GPUS_PER_JOB


wildcard_constraints:
    slice=r"\d{5}",
    chunk=r"\d{3}",
    lang="|".join(CORPUS_LANGS),
    part="train|heldout",


rule cc12m_download:
    input:
        tsv=CC12M["tsv"],
        descriptions=CC12M["descriptions"],
    output:
        images=L.cc12m_images("{slice}"),
        captions=L.cc12m_en_captions("{slice}"),
        stats=L.cc12m_images("{slice}", "_stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_download", "{slice}"),
    benchmark:
        L.stage_time("cc12m_download", "{slice}")
    threads: CC12M.get("download", {}).get("processes", 1)
    resources:
        mem_mb=8000,
        runtime=720,
    script:
        "../workflow_scripts/cc12m_download.py"


rule cc12m_captions:
    input:
        rules.cc12m_download.output.images,
        rules.cc12m_download.output.captions,
        CC12M["translator"]["model_dir"],
    output:
        captions=L.cc12m_captions("{slice}"),
        stats=L.cc12m_captions("{slice}", "_stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_captions", "{slice}"),
    benchmark:
        L.stage_time("cc12m_captions", "{slice}")
    threads: 4
    resources:
        mem_mb=16000,
        runtime=720,
        gpu=CC12M_GPUS,
    script:
        "../workflow_scripts/cc12m_captions.py"


rule cc12m_corpus:
    output:
        chunks=[L.cc12m_corpus("{lang}", chunk) for chunk in CHUNKS],
        stats=L.cc12m_corpus_stats("{lang}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_corpus", "{lang}"),
    benchmark:
        L.stage_time("cc12m_corpus", "{lang}")
    threads: 1
    resources:
        mem_mb=4000,
        runtime=360,
    script:
        "../workflow_scripts/cc12m_corpus.py"


rule cc12m_embed_images:
    input:
        rules.cc12m_download.output.images,
        CC12M["clip"]["weights"],
    output:
        L.cc12m_image_embeddings("{slice}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_embed_images", "{slice}"),
    benchmark:
        L.stage_time("cc12m_embed_images", "{slice}")
    threads: 4
    resources:
        mem_mb=8000,
        runtime=360,
        gpu=CC12M_GPUS,
    script:
        "../workflow_scripts/cc12m_embed_images.py"


rule cc12m_embed_sentences:
    input:
        L.cc12m_corpus("{lang}", "{chunk}"),
        CC12M["clip"]["weights"],
    output:
        L.cc12m_sentence_embeddings("{lang}", "{chunk}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_embed_sentences", "{lang}-{chunk}"),
    benchmark:
        L.stage_time("cc12m_embed_sentences", "{lang}-{chunk}")
    threads: 4
    resources:
        mem_mb=8000,
        runtime=360,
        gpu=CC12M_GPUS,
    script:
        "../workflow_scripts/cc12m_embed_sentences.py"


rule cc12m_align:
    input:
        images=expand(L.cc12m_images("{slice}"), slice=SLICES),
        image_embeddings=expand(L.cc12m_image_embeddings("{slice}"), slice=SLICES),
        corpus=[L.cc12m_corpus(lang, chunk) for lang, chunk in SENTENCE_CHUNKS],
        sentence_embeddings=[L.cc12m_sentence_embeddings(lang, chunk) for lang, chunk in SENTENCE_CHUNKS],
    output:
        alignment=directory(L.cc12m_alignment("{part}")),
        stats=L.cc12m_alignment_stats("{part}"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_align", "{part}"),
    benchmark:
        L.stage_time("cc12m_align", "{part}")
    threads: 4
    resources:
        mem_mb=32000,
        runtime=720,
        gpu=CC12M_GPUS,
    script:
        "../workflow_scripts/cc12m_align.py"


rule cc12m_slice_shards:
    input:
        L.cc12m_images("{slice}"),
        L.cc12m_captions("{slice}"),
        L.cc12m_alignment("train"),
    output:
        directory(L.cc12m_slice_shards("{slice}")),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_slice_shards", "{slice}"),
    benchmark:
        L.stage_time("cc12m_slice_shards", "{slice}")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/cc12m_slice_shards.py"


rule shards:
    input:
        expand(L.cc12m_slice_shards("{slice}"), slice=SLICES),
    output:
        shards=directory(L.shards()),
    conda:
        "../envs/data.yaml"
    log:
        L.log("shards"),
    benchmark:
        L.stage_time("shards")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    script:
        "../workflow_scripts/cc12m_shards.py"


rule test_splits:
    input:
        expand(L.cc12m_images("{slice}"), slice=SLICES),
        expand(L.cc12m_captions("{slice}"), slice=SLICES),
        L.cc12m_alignment("heldout"),
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
        L.stage_time("test_splits")
    threads: 1
    resources:
        mem_mb=8000,
        runtime=120,
    script:
        "../workflow_scripts/cc12m_test_splits.py"


rule cc12m_stats:
    input:
        expand(L.cc12m_images("{slice}", "_stats.json"), slice=SLICES),
        expand(L.cc12m_captions("{slice}", "_stats.json"), slice=SLICES),
        expand(L.cc12m_corpus_stats("{lang}"), lang=CORPUS_LANGS),
        expand(L.cc12m_alignment_stats("{part}"), part=["train", "heldout"]),
        rules.shards.output,
        rules.test_splits.output.stats,
    output:
        L.cc12m_stats(),
    conda:
        "../envs/data.yaml"
    log:
        L.log("cc12m_stats"),
    benchmark:
        L.stage_time("cc12m_stats")
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    script:
        "../workflow_scripts/cc12m_stats.py"


# The benchmark files the evaluation rules read, from the configured local public copy: XM3600 for the
# prefix evaluation (Figure 4), in its public layout (captions.jsonl + images/, linked, not copied).
rule benchmarks:
    input:
        config["downstream"]["benchmarks"]["xm3600"]["captions"],
        config["downstream"]["benchmarks"]["xm3600"]["images"],
    output:
        xm3600=directory(L.benchmark("xm3600")),
        stats=L.benchmark("stats.json"),
    conda:
        "../envs/data.yaml"
    log:
        L.log("benchmarks"),
    benchmark:
        L.stage_time("benchmarks")
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    script:
        "../workflow_scripts/benchmarks.py"
