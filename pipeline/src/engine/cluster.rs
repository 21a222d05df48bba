//! The `ballista` engine: the DataFusion plan of [`super::df`] submitted to
//! an Apache Ballista scheduler, and the scheduler and executor processes
//! (`textgcn-ballista`) that run it with the plan's UDFs registered.
//!
//! Ballista ships a plan as protobuf and names each scalar UDF by its
//! name: the scheduler (which plans the stages) and every executor (which
//! runs them) must know the same functions, so both are started from this
//! crate ([`run_scheduler`], [`run_executor`]) with [`super::df::udfs`]
//! registered. Every UDF takes its parameters as literal arguments, so
//! nothing is captured that would not travel.
//!
//! Tables travel as files, not as memory: the documents' token ids and
//! the word statistics are written as Parquet into a scratch directory
//! of the store ([`parquet_table`]), which the scheduler (it lists the
//! files) and the executors (they read them) must see at the same path,
//! as on one machine or a shared file system. The cluster sorts the
//! edges partition by partition ([`sorted_partitions`]); they come back
//! to this process, which merges them (`super::runs`) into the assembly
//! of the published files, as the native build writes them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ballista::prelude::{SessionConfigExt, SessionContextExt};
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::config::{BALLISTA_ADAPTIVE_PLANNER_ENABLED, BALLISTA_SHUFFLE_SORT_BASED_MEMORY_LIMIT_PER_TASK_BYTES};
use ballista_core::registry::BallistaFunctionRegistry;
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{DataFusionError, Result as DfResult};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::physical_plan::display::DisplayableExecutionPlan;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlanProperties;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;

/// Tokens a partition of the `docs` table holds about (the plan's
/// parallelism on a cluster: a task a partition, each over ~8 MB of ids).
const TOKENS_PER_PARTITION: usize = 2 << 20;

/// What each sort of a task keeps back for merging its spilled runs. The
/// executors' pools are shared by their tasks, and a merge's memory is
/// not spillable: with DataFusion's 10 MiB, the 100k-document corpus's
/// final sort failed to merge ("Resources exhausted" with 23 MB held)
/// while the other task's operators held the rest of a 512 MiB pool.
pub(crate) const MERGE_RESERVE: usize = 64 << 20;

/// Rows of a batch on the cluster (documents, for the scans and UDFs).
const DOCS_PER_BATCH: usize = 1024;

/// Bytes a task's shuffle writer buffers before spilling its partitions.
const SHUFFLE_BUFFER_PER_TASK: usize = 64 << 20;

/// Spilled runs one merge pass of an executor reads at most: fewer than
/// in process (`df::MERGE_FAN_IN`), so that a merge's batches stay within
/// [`MERGE_RESERVE`].
const MERGE_FAN_IN: usize = 16;

/// The `docs` table's partitions for `tokens` token ids: at least 4, so
/// that two executors of two slots each have a task each.
pub(crate) fn partitions(tokens: usize) -> usize {
    tokens.div_ceil(TOKENS_PER_PARTITION).max(4)
}

/// A session that plans with `config` and runs on the cluster whose
/// scheduler is at `url` (`df://host:port`).
pub(crate) async fn session(url: &str, config: SessionConfig) -> DfResult<SessionContext> {
    // Batches of 1024 documents: a batch's pairs, as the pairing UDF
    // returns them and unnested, are outside the executors' memory pools
    // (~50 MB each at 200 tokens a document and a window of 20); with
    // DataFusion's 8192, two tasks of the 100k-document corpus took an
    // executor past 1 GB.
    let mut config = config.with_batch_size(DOCS_PER_BATCH).upgrade_for_ballista();
    // What a task's sort-based shuffle writer buffers before it spills
    // (Ballista's default, 256 MiB a task, is half of a 1 GB executor of
    // two slots on its own).
    config.options_mut().set(BALLISTA_SHUFFLE_SORT_BASED_MEMORY_LIMIT_PER_TASK_BYTES, &SHUFFLE_BUFFER_PER_TASK.to_string())?;
    // The static planner: with Ballista 55.0's adaptive one (its default),
    // a job that lost an executor after a stage had finished rolled the
    // stage back, then failed to record the rerun's outputs ("Can't find
    // active stage to update stage outputs") and never ended. The plan
    // has nothing to adapt anyway: its joins' build side is the word
    // statistics, always collected.
    config.options_mut().set(BALLISTA_ADAPTIVE_PLANNER_ENABLED, "false")?;
    let state = SessionStateBuilder::new().with_default_features().with_config(config).build();
    SessionContext::remote_with_state(url, state).await
}

/// Runs the sort `edges` on the cluster without its final merge: the
/// stream gives every sorted partition in turn, for this process to merge
/// (`super::runs`).
///
/// The plan is made here and submitted as a physical plan, the
/// sort-preserving merge at its root taken off: submitted as a logical
/// plan, the scheduler would make that merge a stage of one task that
/// reads all the sorted partitions at once, and Ballista 55.0 buffers
/// each partition it fetches from another executor whole.
pub(crate) async fn sorted_partitions(ctx: &SessionContext, url: &str, edges: DataFrame) -> DfResult<SendableRecordBatchStream> {
    let state = ctx.state();
    let logical = state.optimize(edges.logical_plan())?;
    let plan = DefaultPhysicalPlanner::default().create_physical_plan(&logical, &state).await?;
    let plan = match plan.downcast_ref::<SortPreservingMergeExec>() {
        Some(merge) => merge.input().clone(),
        None => plan,
    };
    if plan.output_ordering().is_none() {
        return Err(DataFusionError::Internal(format!("the edges' plan does not sort its partitions:\n{}", DisplayableExecutionPlan::new(plan.as_ref()).indent(true))));
    }
    let config = state.config().clone();
    let codec = config.ballista_physical_extension_codec();
    let scheduler = scheduler_url(url)?;
    execute_physical_plan::<PhysicalPlanNode>(scheduler, &config.ballista_config(), plan, codec.as_ref(), state.session_id().to_owned(), config).await
}

/// The scheduler's gRPC address for `url` (`df://host:port`).
fn scheduler_url(url: &str) -> DfResult<String> {
    let (host, port) = url.strip_prefix("df://").and_then(|a| a.rsplit_once(':')).ok_or_else(|| DataFusionError::Configuration(format!("{url} is not df://HOST:PORT")))?;
    Ok(format!("http://{host}:{port}"))
}

/// Writes `parts` as one Parquet file a partition into `dir` (created)
/// and reads them back as a table: what the executors read.
pub(crate) async fn parquet_table(ctx: &SessionContext, dir: &Path, schema: SchemaRef, parts: Vec<Vec<RecordBatch>>) -> DfResult<DataFrame> {
    std::fs::create_dir_all(dir).map_err(|e| DataFusionError::External(format!("creating {}: {e}", dir.display()).into()))?;
    // An empty table is one file with the schema and no rows.
    let parts = if parts.is_empty() { vec![Vec::new()] } else { parts };
    for (k, batches) in parts.iter().enumerate() {
        let path = dir.join(format!("part-{k:05}.parquet"));
        let file = std::fs::File::create(&path).map_err(|e| DataFusionError::External(format!("creating {}: {e}", path.display()).into()))?;
        let mut w = parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None)?;
        for b in batches {
            w.write(b)?;
        }
        w.close()?;
    }
    let dir = dir.to_str().ok_or_else(|| DataFusionError::Plan(format!("{} is not UTF-8: the cluster cannot be given it", dir.display())))?;
    ctx.read_parquet(format!("{dir}/"), ParquetReadOptions::default().schema(&schema)).await
}

/// The functions a scheduler's or executor's sessions know: DataFusion's
/// and Ballista's, and the plan's UDFs.
fn registry() -> BallistaFunctionRegistry {
    let mut r = BallistaFunctionRegistry::default();
    for u in super::df::udfs() {
        r.scalar_functions.insert(u.name().to_owned(), Arc::new(u));
    }
    r
}

/// A Ballista scheduler's settings (`textgcn-ballista scheduler`).
#[derive(Clone, Debug)]
pub struct SchedulerOptions {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// Seconds without a heartbeat after which an executor is taken for
    /// dead and its tasks are run elsewhere.
    pub executor_timeout_seconds: u64,
}

/// Runs a scheduler until the process ends.
pub async fn run_scheduler(o: SchedulerOptions) -> Result<(), String> {
    let mut config = SchedulerConfig { bind_host: o.bind.ip().to_string(), bind_port: o.bind.port(), external_host: o.bind.ip().to_string(), ..SchedulerConfig::default() };
    config.executor_timeout_seconds = o.executor_timeout_seconds;
    config.expire_dead_executor_interval_seconds = (o.executor_timeout_seconds / 4).clamp(1, 15);
    config.no_executors_grace_period_seconds = o.executor_timeout_seconds;
    let config = config.with_override_session_builder(Arc::new(|c: SessionConfig| {
        let mut state = ballista_core::utils::default_session_builder(c)?;
        for u in super::df::udfs() {
            state.register_udf(Arc::new(u))?;
        }
        Ok(state)
    }));
    let cluster = BallistaCluster::new_from_config(&config).await.map_err(|e| format!("starting the scheduler: {e}"))?;
    start_server(cluster, o.bind, Arc::new(config)).await.map_err(|e| format!("scheduler on {}: {e}", o.bind))
}

/// A Ballista executor's settings (`textgcn-ballista executor`).
#[derive(Clone, Debug)]
pub struct ExecutorOptions {
    /// The scheduler's host and port.
    pub scheduler: (String, u16),
    /// Host to listen on (and to give the scheduler).
    pub bind: String,
    /// Port of its Arrow Flight service (shuffle data).
    pub port: u16,
    /// Port of its gRPC service (tasks).
    pub grpc_port: u16,
    /// Tasks it runs at once.
    pub slots: usize,
    /// Where its shuffle and spill files go.
    pub work_dir: PathBuf,
    /// Its memory pool, bytes (spilling beyond it); `None`: Ballista's
    /// default, a share of the machine's or the cgroup's memory.
    pub memory_pool: Option<u64>,
    /// Seconds between its heartbeats to the scheduler.
    pub heartbeat_seconds: u64,
}

/// Runs an executor until the process ends.
pub async fn run_executor(o: ExecutorOptions) -> Result<(), String> {
    // Batches (a UDF's pairs, unnested copies, shuffle buffers) are
    // allocated and freed by many tokio workers: served from fresh pages
    // from 128 KiB up, they go back on free instead of staying in
    // per-thread heaps outside any pool (an executor of one slot and a
    // 512 MiB pool passed a 1 GB cgroup limit without this).
    crate::alloc::allocations_via_mmap_from(128 << 10);
    let work_dir = o.work_dir.to_str().ok_or_else(|| format!("{} is not UTF-8", o.work_dir.display()))?.to_owned();
    std::fs::create_dir_all(&o.work_dir).map_err(|e| format!("creating {}: {e}", o.work_dir.display()))?;
    let spill = o.work_dir.clone();
    let config = ExecutorProcessConfig {
        bind_host: o.bind.clone(),
        external_host: Some(o.bind.clone()),
        port: o.port,
        grpc_port: o.grpc_port,
        scheduler_host: o.scheduler.0.clone(),
        scheduler_port: o.scheduler.1,
        scheduler_connect_timeout_seconds: 30,
        vcores: o.slots.max(1),
        work_dir: Some(work_dir),
        print_thread_info: false,
        executor_heartbeat_interval_seconds: o.heartbeat_seconds.max(1),
        memory_pool_size: o.memory_pool,
        override_function_registry: Some(Arc::new(registry())),
        // Spills go to the work directory, merged `MERGE_FAN_IN` runs at a
        // time (an unbounded fan-in hung the in-process build).
        override_runtime_producer: Some(Arc::new(move |_: &SessionConfig| RuntimeEnvBuilder::new().with_temp_file_path(spill.clone()).with_max_spill_merge_fan_in(MERGE_FAN_IN).build_arc())),
        ..ExecutorProcessConfig::default()
    };
    start_executor_process(Arc::new(config)).await.map_err(|e| format!("executor on {}:{}: {e}", o.bind, o.grpc_port))
}
