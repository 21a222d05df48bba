//! The graph stage's counts as an Apache DataFusion plan
//! (`build.engine = "datafusion"`).
//!
//! The documents' token ids are the table `docs(doc, tokens)`, split into
//! as many partitions as there are workers. Scalar UDFs pre-aggregate each
//! document with the native build's arithmetic ([`graph::pair_windows`],
//! the same window rules): its distinct words with their count and the
//! windows holding them (`textgcn_doc_words`), its word pairs with their
//! co-occurrence count (`textgcn_doc_pairs`), its windows
//! (`textgcn_doc_windows`). The plan unnests those lists and sums by word
//! and by pair, so what moves between operators is counts, not positions.
//! The word statistics (a row a word: bounded by the vocabulary) are
//! collected and joined back; TF-IDF and PMI are UDFs over the integer
//! counts ([`graph::tfidf`], [`graph::positive_pmi`], the functions the
//! native rows call). The edges of both directions are sorted by (row,
//! column) in DataFusion's memory pool, spilling to the store's `tmp/`,
//! and streamed into [`Assembler`], which adds the self loops and hands
//! the rows to the native build's spool and writers: the published files
//! are the same bytes as the native engine's.
//!
//! Memory: the pool (aggregations, joins, the sort) takes the build's
//! memory limit less what the stage holds anyway (the token ids, here
//! twice: the stage's copy and the table's); the assembled rows get the
//! same budget as the native build's and spill beyond it.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, LargeListArray, RecordBatch, StructArray, UInt32Array, UInt64Array};
use datafusion::arrow::buffer::{OffsetBuffer, ScalarBuffer};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Float64Type, Schema, SchemaRef, UInt32Type, UInt64Type};
use datafusion::common::{DataFusionError, Result as DfResult, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::functions::core::expr_fn::get_field;
use datafusion::functions_aggregate::expr_fn::{count, sum};
use datafusion::logical_expr::{ColumnarValue, JoinType, Operator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, binary_expr};
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::prelude::{DataFrame, Expr, SessionConfig, SessionContext, cast, col, lit};
use futures::StreamExt;
use rustc_hash::FxHashMap;

use crate::config::Cooccurrence;
use crate::graph::{self, Assembler, Graph, RowMemory};

/// Partial aggregations that keep more than this share of their rows as
/// groups stop aggregating (DataFusion's default is 0.8).
const PARTIAL_AGGREGATION_RATIO: f64 = 0.3;

/// The smallest memory pool the plan is given, whatever the memory limit
/// leaves. The spillable operators share the pool fairly and spill at
/// their share, but what cannot spill (the final merge of the sorted
/// partitions, a few batches each) needs room beside them: with 32 MiB,
/// 20ng failed with "Resources exhausted" in that merge; 128 MiB built it,
/// spilling 1.2 GB.
pub(crate) const MIN_POOL: usize = 128 << 20;

/// How often the pairing of the documents reports how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(250);

/// Spilled runs one merge pass reads at most.
const MERGE_FAN_IN: usize = 64;

/// Documents a batch of the `docs` table holds.
const DOCS_PER_BATCH: usize = 4096;

/// Where the plan runs.
pub(crate) enum Site<'a> {
    /// This process: a memory pool of `pool_bytes`, spilling to files in
    /// `spill_dir`.
    Local { pool_bytes: usize, spill_dir: &'a Path },
    /// The Ballista cluster whose scheduler is at `url` (`df://host:port`).
    /// Its executors read the tables this process writes as Parquet into
    /// `scratch`, which they must see at the same path.
    #[cfg(feature = "ballista")]
    Cluster { url: &'a str, scratch: &'a Path },
}

impl Site<'_> {
    /// Whether the plan runs on a cluster.
    fn is_cluster(&self) -> bool {
        match self {
            Site::Local { .. } => false,
            #[cfg(feature = "ballista")]
            Site::Cluster { .. } => true,
        }
    }
}

/// Builds the graph of the id-encoded documents (`offsets`, `ids`) over
/// `num_words` words on DataFusion, in this process or on a cluster as
/// `site` says, with the rows kept as `memory` says.
pub(crate) fn build(offsets: &[usize], ids: &[u32], num_words: usize, window: usize, mode: Cooccurrence, site: Site<'_>, memory: RowMemory<'_>) -> io::Result<Graph> {
    let threads = rayon::current_num_threads().max(1);
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.worker_threads(threads).thread_name("textgcn-datafusion").enable_time();
    // The cluster's client talks gRPC.
    #[cfg(feature = "ballista")]
    runtime.enable_io();
    let runtime = runtime.build()?;
    let failed = |e: DataFusionError| io::Error::other(format!("DataFusion: {e}"));
    runtime.block_on(run(offsets, ids, num_words, window, mode, site, threads, memory)).map_err(failed)?
}

/// The session's settings for the plan, wherever it runs; each sort keeps
/// `merge_reserve` bytes back for merging its spilled runs.
fn session_config(partitions: usize, merge_reserve: usize) -> SessionConfig {
    let mut config = SessionConfig::new().with_target_partitions(partitions);
    // Each document's pairs come summed already: when a partial
    // aggregation still leaves more than a third of its rows, it is a
    // second hash table of the same pairs, and skipping it (rows go to the
    // final aggregation as they are) halves the time of the pair counts.
    config.options_mut().execution.skip_partial_aggregation_probe_ratio_threshold = PARTIAL_AGGREGATION_RATIO;
    config.options_mut().execution.sort_spill_reservation_bytes = merge_reserve;
    // The word statistics (a row a word) are every join's left side: the
    // side a hash join builds and holds, and cannot spill. Collected whole
    // into one table, whatever the vocabulary (by default only tables
    // under 128 Ki rows are; the 100k-document corpus's 226 Ki words were
    // hashed by partition with the pairs as the held side, and the join
    // ran out of memory).
    config.options_mut().optimizer.hash_join_single_partition_threshold_rows = usize::MAX;
    config.options_mut().optimizer.hash_join_single_partition_threshold = usize::MAX;
    config
}

/// The UDFs of the plan, for a session or an executor's registry.
pub fn udfs() -> Vec<ScalarUDF> {
    vec![DocWords::udf(), DocPairs::udf(), DocWindows::udf(), Tfidf::udf(), Pmi::udf(), Mirror::udf()]
}

/// The plan, and the assembly of its sorted edges.
#[allow(clippy::too_many_arguments)]
async fn run(offsets: &[usize], ids: &[u32], num_words: usize, window: usize, mode: Cooccurrence, site: Site<'_>, threads: usize, memory: RowMemory<'_>) -> DfResult<io::Result<Graph>> {
    let nd = offsets.len() - 1;
    let (ctx, partitions) = match &site {
        Site::Local { pool_bytes, spill_dir } => {
            // A merge of spilled sort runs reads each file on a blocking
            // thread: an unlimited fan-in (DataFusion's default) over
            // thousands of small runs outgrew tokio's blocking threads and
            // hung the build; passes of at most `MERGE_FAN_IN` files do not.
            let runtime = RuntimeEnvBuilder::new().with_memory_pool(Arc::new(FairSpillPool::new(*pool_bytes))).with_temp_file_path(*spill_dir).with_max_spill_merge_fan_in(MERGE_FAN_IN).build_arc()?;
            // What each sorting partition keeps back for merging its
            // spilled runs (DataFusion's default, 10 MiB, is more than a
            // small pool has).
            let merge_reserve = (*pool_bytes / (8 * threads)).min(10 << 20);
            (SessionContext::new_with_config_rt(session_config(threads, merge_reserve), runtime), threads)
        }
        #[cfg(feature = "ballista")]
        Site::Cluster { url, .. } => {
            let partitions = super::cluster::partitions(ids.len());
            (super::cluster::session(url, session_config(partitions, super::cluster::MERGE_RESERVE)).await?, partitions)
        }
    };
    for udf in udfs() {
        ctx.register_udf(udf);
    }
    // On a cluster the build waits for three jobs (each job's stages and
    // tasks are the scheduler's): say which one it is at.
    let jobs_done = |k: u64| {
        if site.is_cluster() {
            (memory.progress)("cluster jobs done", k, 3);
        }
    };
    let docs = table(&ctx, &site, "docs", docs_table(offsets, ids, partitions)?).await?;
    jobs_done(0);
    let w = lit(window as u64);

    // #W: the windows of every document.
    let windows = docs.clone().aggregate(vec![], vec![sum(DocWindows::udf().call(vec![col("tokens"), w.clone()])).alias("windows")])?.collect().await?;
    jobs_done(1);
    let num_windows = windows.first().and_then(|b| b.column(0).as_primitive_opt::<UInt64Type>()).filter(|a| a.len() == 1 && a.is_valid(0)).map(|a| a.value(0)).unwrap_or(0);

    // Each document's distinct words: (doc, word, tf, windows holding it).
    let doc_words = unnest_struct(docs.clone().select(vec![col("doc"), DocWords::udf().call(vec![col("tokens"), w.clone()]).alias("dw")])?, "dw", &["doc"], &["word", "tf", "windows"])?;
    // Per word: #W(i) and the document frequency, one row a word.
    let stats = doc_words.clone().aggregate(vec![col("word")], vec![count(lit(1u64)).alias("df"), sum(col("windows")).alias("wfreq")])?;
    let stats = table(&ctx, &site, "stats", (stats.schema().inner().clone(), vec![stats.collect().await?])).await?;
    jobs_done(2);

    // TF-IDF edges (doc, D + word).
    let nd_lit = lit(nd as u64);
    let tfidf = stats
        .clone()
        .select(vec![col("word").alias("s_word"), col("df")])?
        .join(doc_words, JoinType::Inner, &["s_word"], &["word"], None)?
        .select(vec![u64(col("doc")).alias("a"), (u64(col("word")) + nd_lit.clone()).alias("b"), Tfidf::udf().call(vec![u64(col("tf")), u64(col("df")), nd_lit.clone()]).alias("w")])?
        .filter(col("w").is_not_null())?;

    // PMI edges (D + i, D + j), i < j: each document's pairs as one 64-bit
    // key `i << 32 | j` (a primitive group key), summed, with #W(i), #W(j).
    let paired = Arc::new(AtomicU64::new(0));
    let doc_pairs = DocPairs::counting(paired.clone()).call(vec![col("tokens"), w, lit(mode == Cooccurrence::Windows)]);
    let pairs = unnest_struct(docs.select(vec![doc_pairs.alias("dp")])?, "dp", &[], &["key", "n"])?
        .aggregate(vec![col("key")], vec![sum(col("n")).alias("cnt")])?
        .select(vec![binary_expr(col("key"), Operator::BitwiseShiftRight, lit(32u64)).alias("i"), binary_expr(col("key"), Operator::BitwiseAnd, lit(u32::MAX as u64)).alias("j"), col("cnt")])?;
    let side = |word: &str, f: &str| stats.clone().select(vec![u64(col("word")).alias(word), col("wfreq").alias(f)]);
    let pmi = side("wj", "fj")?
        .join(side("wi", "fi")?.join(pairs, JoinType::Inner, &["wi"], &["i"], None)?, JoinType::Inner, &["wj"], &["j"], None)?
        .select(vec![(col("i") + nd_lit.clone()).alias("a"), (col("j") + nd_lit).alias("b"), Pmi::udf().call(vec![u64(col("cnt")), u64(col("fi")), u64(col("fj")), lit(num_windows)]).alias("w")])?
        .filter(col("w").is_not_null())?;

    // Every edge in both directions, as the key `row << 32 | col`, sorted.
    let edges = unnest_list(tfidf.union(pmi)?.select(vec![Mirror::udf().call(vec![col("a"), col("b")]).alias("key"), col("w")])?, "key")?.sort(vec![col("key").sort(true, false)])?;
    let progress = memory.progress;
    let mut asm = Assembler::new(nd, num_words, memory);
    let push = |asm: &mut Assembler<'_>, keys: &[u64], weights: &[f64]| {
        let (rows, cols): (Vec<u64>, Vec<u64>) = keys.iter().map(|&k| (k >> 32, k & u32::MAX as u64)).unzip();
        asm.push(&rows, &cols, weights)
    };
    match &site {
        Site::Local { pool_bytes, spill_dir } => {
            let plan = edges.create_physical_plan().await?;
            let mut stream = execute_stream(plan.clone(), ctx.task_ctx())?;
            // Until the sort gives its first edge, which it does when every
            // document is paired, say how many are.
            let mut first = true;
            loop {
                let next = if first {
                    match tokio::time::timeout(PROGRESS_EVERY, stream.next()).await {
                        Err(_) => {
                            progress("documents paired", paired.load(Ordering::Relaxed), nd as u64);
                            continue;
                        }
                        Ok(next) => {
                            progress("documents paired", paired.load(Ordering::Relaxed), nd as u64);
                            first = false;
                            next
                        }
                    }
                } else {
                    stream.next().await
                };
                let Some(batch) = next else { break };
                let batch = batch?;
                let (keys, weights) = edge_columns(&batch)?;
                if let Err(e) = push(&mut asm, keys, weights) {
                    return Ok(Err(e));
                }
            }
            tracing::debug!("graph: the DataFusion plan of the edges, with its metrics:\n{}", DisplayableExecutionPlan::with_metrics(plan.as_ref()).indent(true));
            let spilled = spilled_bytes(plan.as_ref());
            if spilled > 0 {
                tracing::info!("graph: DataFusion spilled {:.1} MiB to {} (memory pool {:.1} MiB)", spilled as f64 / 1048576.0, spill_dir.display(), *pool_bytes as f64 / 1048576.0);
            }
        }
        #[cfg(feature = "ballista")]
        Site::Cluster { url, .. } => {
            // The cluster sorts each partition; this process merges them
            // (see `super::runs` for why), from a file in the spill
            // directory, as they arrive.
            let mut stream = super::cluster::sorted_partitions(&ctx, url, edges).await?;
            jobs_done(3);
            let mut runs = match super::runs::Runs::new(memory.spill_dir) {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                let (keys, weights) = edge_columns(&batch)?;
                if let Err(e) = runs.push(keys, weights) {
                    return Ok(Err(e));
                }
            }
            tracing::info!("graph: the cluster's sorted edges: {} in {} runs, merged here", runs.edges(), runs.runs());
            if let Err(e) = runs.merge(|keys, weights| push(&mut asm, keys, weights)) {
                return Ok(Err(e));
            }
        }
    }
    Ok(asm.finish(num_windows))
}

/// The keys and weights of a batch of the sorted edges.
fn edge_columns(batch: &RecordBatch) -> DfResult<(&[u64], &[f64])> {
    let keys = batch.column(0).as_primitive_opt::<UInt64Type>().ok_or_else(|| DataFusionError::Internal(format!("edge keys are {}, not UInt64", batch.column(0).data_type())))?;
    let weights = batch.column(1).as_primitive_opt::<Float64Type>().ok_or_else(|| DataFusionError::Internal(format!("edge weights are {}, not Float64", batch.column(1).data_type())))?;
    Ok((keys.values(), weights.values()))
}

/// Bytes the operators of `plan` spilled to disk.
fn spilled_bytes(plan: &dyn ExecutionPlan) -> usize {
    plan.metrics().and_then(|m| m.spilled_bytes()).unwrap_or(0) + plan.children().into_iter().map(|c| spilled_bytes(c.as_ref())).sum::<usize>()
}

/// `e` as a `UInt64` (counts and ids are summed and offset in 64 bits).
fn u64(e: Expr) -> Expr {
    cast(e, DataType::UInt64)
}

/// `df` with its list column `list` unnested into one row per element.
fn unnest_list(df: DataFrame, list: &str) -> DfResult<DataFrame> {
    df.unnest_columns(&[list])
}

/// `df` with its list-of-struct column `list` unnested into one row per
/// element, the struct's `fields` as columns beside the columns `keep`.
fn unnest_struct(df: DataFrame, list: &str, keep: &[&str], fields: &[&str]) -> DfResult<DataFrame> {
    let df = df.unnest_columns(&[list])?;
    let mut cols: Vec<Expr> = keep.iter().map(|k| col(*k)).collect();
    cols.extend(fields.iter().map(|f| get_field(col(list), *f).alias(*f)));
    df.select(cols)
}

/// A table's schema and its batches, by partition.
type Partitions = (SchemaRef, Vec<Vec<RecordBatch>>);

/// The table `name` of these partitions, where the plan can read it: in
/// this process's memory, or as Parquet files in the scratch directory
/// the cluster's executors read.
async fn table(ctx: &SessionContext, site: &Site<'_>, name: &str, (schema, parts): Partitions) -> DfResult<DataFrame> {
    match site {
        Site::Local { .. } => ctx.read_table(Arc::new(MemTable::try_new(schema, parts)?)),
        #[cfg(feature = "ballista")]
        Site::Cluster { scratch, .. } => super::cluster::parquet_table(ctx, &scratch.join(name), schema, parts).await,
    }
}

/// The table `docs(doc: UInt32, tokens: LargeList<UInt32>)`: the documents
/// in order, in `partitions` runs of about equal tokens.
fn docs_table(offsets: &[usize], ids: &[u32], partitions: usize) -> DfResult<Partitions> {
    let item = Arc::new(Field::new("item", DataType::UInt32, false));
    let schema = Arc::new(Schema::new(vec![Field::new("doc", DataType::UInt32, false), Field::new("tokens", DataType::LargeList(item.clone()), false)]));
    let nd = offsets.len() - 1;
    let runs = graph::blocks_by_estimate(nd, ids.len().div_ceil(partitions.max(1)).max(1), |d| offsets[d + 1] - offsets[d] + 1);
    let mut parts = Vec::with_capacity(runs.len());
    for run in runs {
        let mut batches = Vec::new();
        for a in run.clone().step_by(DOCS_PER_BATCH) {
            let b = (a + DOCS_PER_BATCH).min(run.end);
            let docs = UInt32Array::from_iter_values(a as u32..b as u32);
            let offs: Vec<i64> = offsets[a..=b].iter().map(|&o| (o - offsets[a]) as i64).collect();
            let values = UInt32Array::from(ids[offsets[a]..offsets[b]].to_vec());
            let tokens = LargeListArray::try_new(item.clone(), OffsetBuffer::new(ScalarBuffer::from(offs)), Arc::new(values), None)?;
            batches.push(RecordBatch::try_new(schema.clone(), vec![Arc::new(docs), Arc::new(tokens)])?);
        }
        parts.push(batches);
    }
    Ok((schema, parts))
}

/// The token ids of each row of a `LargeList<UInt32>` argument.
fn token_lists<'a>(name: &str, arg: &'a ArrayRef) -> DfResult<(&'a [i64], &'a [u32])> {
    let list = arg.as_list_opt::<i64>().ok_or_else(|| DataFusionError::Execution(format!("{name}: tokens must be a LargeList<UInt32>, not {}", arg.data_type())))?;
    let values = list.values().as_primitive_opt::<UInt32Type>().ok_or_else(|| DataFusionError::Execution(format!("{name}: token ids must be UInt32, not {}", list.values().data_type())))?;
    Ok((list.value_offsets(), values.values()))
}

/// The `UInt64` value of a literal argument.
fn literal_u64(name: &str, arg: &ColumnarValue) -> DfResult<u64> {
    match arg {
        ColumnarValue::Scalar(ScalarValue::UInt64(Some(v))) => Ok(*v),
        other => Err(DataFusionError::Execution(format!("{name}: expected a UInt64 literal, got {other:?}"))),
    }
}

/// A `UInt64` array argument (or a literal, repeated).
fn u64_values(name: &str, arg: &ColumnarValue, rows: usize) -> DfResult<UInt64Array> {
    let a = arg.to_array(rows)?;
    a.as_primitive_opt::<UInt64Type>().cloned().ok_or_else(|| DataFusionError::Execution(format!("{name}: expected UInt64 values, got {}", a.data_type())))
}

/// A list of structs with these fields, one list a row, as a UDF returns.
fn struct_list_type(fields: &Fields) -> DataType {
    DataType::LargeList(Arc::new(Field::new("item", DataType::Struct(fields.clone()), false)))
}

/// Rows of struct lists built column by column.
fn struct_list(fields: &Fields, offsets: Vec<i64>, columns: Vec<ArrayRef>) -> DfResult<ColumnarValue> {
    let values = StructArray::try_new(fields.clone(), columns, None)?;
    let item = Arc::new(Field::new("item", DataType::Struct(fields.clone()), false));
    Ok(ColumnarValue::Array(Arc::new(LargeListArray::try_new(item, OffsetBuffer::new(ScalarBuffer::from(offsets)), Arc::new(values), None)?)))
}

/// Declares a UDF: its type, SQL name, number of arguments, return type,
/// and the function that evaluates it (called with the UDF's name, for
/// messages, and its counter of the rows it evaluated, for progress).
macro_rules! udf {
    ($t:ident, $name:literal, $args:literal, $returns:expr, $invoke:ident) => {
        #[derive(Debug)]
        struct $t {
            signature: Signature,
            /// Rows evaluated so far (not part of the UDF's identity).
            done: Arc<AtomicU64>,
        }

        impl $t {
            const NAME: &'static str = $name;

            fn udf() -> ScalarUDF {
                Self::counting(Arc::default())
            }

            /// The UDF, adding the rows it evaluates to `done`.
            fn counting(done: Arc<AtomicU64>) -> ScalarUDF {
                ScalarUDF::new_from_impl($t { signature: Signature::any($args, Volatility::Immutable), done })
            }
        }

        impl PartialEq for $t {
            fn eq(&self, other: &Self) -> bool {
                self.signature == other.signature
            }
        }

        impl Eq for $t {}

        impl std::hash::Hash for $t {
            fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
                self.signature.hash(h)
            }
        }

        impl ScalarUDFImpl for $t {
            fn name(&self) -> &str {
                Self::NAME
            }
            fn signature(&self) -> &Signature {
                &self.signature
            }
            fn return_type(&self, _: &[DataType]) -> DfResult<DataType> {
                Ok($returns)
            }
            fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
                let rows = args.number_rows as u64;
                let out = $invoke(Self::NAME, args);
                self.done.fetch_add(rows, Ordering::Relaxed);
                out
            }
        }
    };
}

udf!(DocWords, "textgcn_doc_words", 2, struct_list_type(&doc_words_fields()), doc_words_udf);
udf!(DocPairs, "textgcn_doc_pairs", 3, struct_list_type(&doc_pairs_fields()), doc_pairs_udf);
udf!(DocWindows, "textgcn_doc_windows", 2, DataType::UInt64, doc_windows_udf);
udf!(Tfidf, "textgcn_tfidf", 3, DataType::Float64, tfidf_udf);
udf!(Pmi, "textgcn_pmi", 4, DataType::Float64, pmi_udf);
udf!(Mirror, "textgcn_mirror", 2, DataType::LargeList(Arc::new(Field::new("item", DataType::UInt64, false))), mirror_udf);

fn doc_words_fields() -> Fields {
    Fields::from(vec![Field::new("word", DataType::UInt32, false), Field::new("tf", DataType::UInt64, false), Field::new("windows", DataType::UInt64, false)])
}

fn doc_pairs_fields() -> Fields {
    Fields::from(vec![Field::new("key", DataType::UInt64, false), Field::new("n", DataType::UInt64, false)])
}

/// `textgcn_doc_words(tokens, window)`: a document's distinct words,
/// ascending, each with its count and the number of the document's
/// windows holding it (`#W(i)`'s share of this document).
fn doc_words_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let tokens = args.args[0].to_array(args.number_rows)?;
    let (offsets, ids) = token_lists(name, &tokens)?;
    let w = literal_u64(name, &args.args[1])? as usize;
    let (mut word, mut tf, mut windows, mut out) = (Vec::new(), Vec::new(), Vec::new(), vec![0i64]);
    let mut scratch = Vec::new();
    for d in 0..offsets.len() - 1 {
        doc_words(&ids[offsets[d] as usize..offsets[d + 1] as usize], w, &mut scratch, |t, n, k| {
            word.push(t);
            tf.push(n);
            windows.push(k);
        });
        out.push(word.len() as i64);
    }
    struct_list(&doc_words_fields(), out, vec![Arc::new(UInt32Array::from(word)), Arc::new(UInt64Array::from(tf)), Arc::new(UInt64Array::from(windows))])
}

/// Calls `out(word, count, windows)` for each distinct word of the
/// document `toks`, ascending: the windows are those of
/// `[max(0, p − W + 1), min(p, L − W)]` over its occurrences `p` (one
/// window for a document of at most `W` tokens), as the native statistics
/// count them.
fn doc_words(toks: &[u32], w: usize, scratch: &mut Vec<(u32, u32)>, mut out: impl FnMut(u32, u64, u64)) {
    let l = toks.len();
    scratch.clear();
    scratch.extend(toks.iter().enumerate().map(|(p, &t)| (t, p as u32)));
    scratch.sort_unstable();
    for run in scratch.chunk_by(|a, b| a.0 == b.0) {
        let windows = if l <= w {
            1
        } else {
            let (mut total, mut last_hi) = (0u64, None::<usize>);
            for &(_, p) in run {
                let p = p as usize;
                let hi = p.min(l - w);
                let lo = last_hi.map_or(p.saturating_sub(w - 1), |h| p.saturating_sub(w - 1).max(h + 1));
                if lo <= hi {
                    total += (hi - lo + 1) as u64;
                }
                last_hi = Some(hi);
            }
            total
        };
        out(run[0].0, run.len() as u64, windows);
    }
}

/// `textgcn_doc_pairs(tokens, window, windows_mode)`: a document's pairs of
/// distinct words `i < j`, as the key `i << 32 | j`, with their
/// co-occurrence count in it: the
/// windows holding both positions summed over position pairs (the
/// reference), or with `windows_mode` the windows holding both words.
fn doc_pairs_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let tokens = args.args[0].to_array(args.number_rows)?;
    let (offsets, ids) = token_lists(name, &tokens)?;
    let w = literal_u64(name, &args.args[1])? as usize;
    let windows_mode = match &args.args[2] {
        ColumnarValue::Scalar(ScalarValue::Boolean(Some(b))) => *b,
        other => return Err(DataFusionError::Execution(format!("{}: expected a Boolean literal, got {other:?}", name))),
    };
    let (mut keys, mut ns, mut out) = (Vec::new(), Vec::new(), vec![0i64]);
    let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
    let mut window_words = Vec::new();
    for d in 0..offsets.len() - 1 {
        let toks = &ids[offsets[d] as usize..offsets[d + 1] as usize];
        if windows_mode {
            doc_window_pairs(toks, w, &mut window_words, &mut counts);
        } else {
            doc_position_pairs(toks, w, &mut counts);
        }
        // In the map's order: the sums downstream are of integers.
        for (key, n) in counts.drain() {
            keys.push(key);
            ns.push(n);
        }
        out.push(keys.len() as i64);
    }
    struct_list(&doc_pairs_fields(), out, vec![Arc::new(UInt64Array::from(keys)), Arc::new(UInt64Array::from(ns))])
}

/// The pair `(min, max)` of two word ids as one key.
fn pair_key(a: u32, b: u32) -> u64 {
    let (i, j) = if a < b { (a, b) } else { (b, a) };
    ((i as u64) << 32) | j as u64
}

/// The reference's counts: every pair of positions `p < q` with
/// `q − p < W` and different words adds the windows holding both.
fn doc_position_pairs(toks: &[u32], w: usize, counts: &mut FxHashMap<u64, u64>) {
    let l = toks.len();
    for (p, &a) in toks.iter().enumerate() {
        for (q, &b) in toks.iter().enumerate().take(p.saturating_add(w).min(l)).skip(p + 1) {
            if a != b {
                *counts.entry(pair_key(a, b)).or_default() += graph::pair_windows(p, q, l, w) as u64;
            }
        }
    }
}

/// The paper's counts: each window (the whole document when it is at most
/// `W` tokens) adds one to every pair of distinct words in it.
fn doc_window_pairs(toks: &[u32], w: usize, words: &mut Vec<u32>, counts: &mut FxHashMap<u64, u64>) {
    let l = toks.len();
    let (starts, len) = if l <= w { (1, l) } else { (l - w + 1, w) };
    for s in 0..starts {
        words.clear();
        words.extend_from_slice(&toks[s..s + len]);
        words.sort_unstable();
        words.dedup();
        for (k, &a) in words.iter().enumerate() {
            for &b in &words[k + 1..] {
                *counts.entry(pair_key(a, b)).or_default() += 1;
            }
        }
    }
}

/// `textgcn_doc_windows(tokens, window)`: a document's windows.
fn doc_windows_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let tokens = args.args[0].to_array(args.number_rows)?;
    let (offsets, _) = token_lists(name, &tokens)?;
    let w = literal_u64(name, &args.args[1])? as usize;
    let windows: UInt64Array = offsets.windows(2).map(|o| graph::windows_of((o[1] - o[0]) as usize, w) as u64).collect();
    Ok(ColumnarValue::Array(Arc::new(windows)))
}

/// `textgcn_tfidf(tf, df, documents)`: the document-word weight, or null
/// where it is 0 (no edge).
fn tfidf_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let rows = args.number_rows;
    let (tf, df) = (u64_values(name, &args.args[0], rows)?, u64_values(name, &args.args[1], rows)?);
    let nd = literal_u64(name, &args.args[2])? as usize;
    let w: Float64Array = tf.values().iter().zip(df.values()).map(|(&n, &df)| Some(graph::tfidf(n, graph::idf(nd, df))).filter(|&x| x != 0.0)).collect();
    Ok(ColumnarValue::Array(Arc::new(w)))
}

/// `textgcn_pmi(count, wfreq_i, wfreq_j, windows)`: the pair's PMI, or
/// null where it is not positive (no edge).
fn pmi_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let rows = args.number_rows;
    let cnt = u64_values(name, &args.args[0], rows)?;
    let (fi, fj) = (u64_values(name, &args.args[1], rows)?, u64_values(name, &args.args[2], rows)?);
    let nw = literal_u64(name, &args.args[3])?;
    let w: Float64Array = (0..rows).map(|k| graph::positive_pmi(cnt.value(k), fi.value(k), fj.value(k), nw)).collect();
    Ok(ColumnarValue::Array(Arc::new(w)))
}

/// `textgcn_mirror(a, b)`: the edge between nodes `a` and `b` in both
/// directions, as the keys `[a << 32 | b, b << 32 | a]`.
fn mirror_udf(name: &str, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
    let rows = args.number_rows;
    let (a, b) = (u64_values(name, &args.args[0], rows)?, u64_values(name, &args.args[1], rows)?);
    let keys: UInt64Array = a.values().iter().zip(b.values()).flat_map(|(&a, &b)| [(a << 32) | b, (b << 32) | a]).collect();
    let offsets = OffsetBuffer::new(ScalarBuffer::from((0..=rows as i64).map(|k| 2 * k).collect::<Vec<i64>>()));
    let item = Arc::new(Field::new("item", DataType::UInt64, false));
    Ok(ColumnarValue::Array(Arc::new(LargeListArray::try_new(item, offsets, Arc::new(keys), None)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_documents_words_count_the_windows_holding_them() {
        // "a b a c", W = 2: windows [a b], [b a], [a c].
        let mut got = Vec::new();
        doc_words(&[0, 1, 0, 2], 2, &mut Vec::new(), |t, n, k| got.push((t, n, k)));
        assert_eq!(got, vec![(0, 2, 3), (1, 1, 2), (2, 1, 1)]);
        // A document of at most W tokens is one window.
        got.clear();
        doc_words(&[5, 5, 4], 3, &mut Vec::new(), |t, n, k| got.push((t, n, k)));
        assert_eq!(got, vec![(4, 1, 1), (5, 2, 1)]);
    }

    #[test]
    fn pairs_count_position_pairs_or_windows() {
        // "a b a c", W = 2: position pairs (0,1) (1,2) (2,3), one window each.
        let mut counts = FxHashMap::default();
        doc_position_pairs(&[0, 1, 0, 2], 2, &mut counts);
        let mut got: Vec<_> = counts.drain().collect();
        got.sort();
        assert_eq!(got, vec![(pair_key(0, 1), 2), (pair_key(0, 2), 1)]);
        // W = 3 (windows [a b a] and [b a c]): a-b from positions (0,1),
        // in one window, and (1,2), in two; b-c from (1,3), in one; a-c
        // from (2,3), in one ((0,3) is too far apart).
        doc_position_pairs(&[0, 1, 0, 2], 3, &mut counts);
        let mut got: Vec<_> = counts.drain().collect();
        got.sort();
        assert_eq!(got, vec![(pair_key(0, 1), 3), (pair_key(0, 2), 1), (pair_key(1, 2), 1)]);
        // The paper's: a-b in both windows, a-c and b-c in the second.
        doc_window_pairs(&[0, 1, 0, 2], 3, &mut Vec::new(), &mut counts);
        let mut got: Vec<_> = counts.drain().collect();
        got.sort();
        assert_eq!(got, vec![(pair_key(0, 1), 2), (pair_key(0, 2), 1), (pair_key(1, 2), 1)]);
    }
}
