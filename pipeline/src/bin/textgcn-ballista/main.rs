//! `textgcn-ballista`: a Ballista scheduler or executor that knows the
//! graph plan's UDFs, for `textgcn build --engine ballista --cluster
//! df://HOST:PORT` (crate feature `ballista`). See docs/scale.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use textgcn_pipeline::engine::cluster::{ExecutorOptions, SchedulerOptions, run_executor, run_scheduler};

#[derive(Parser)]
#[command(name = "textgcn-ballista", version, about = "A Ballista scheduler or executor with textgcn's graph UDFs registered")]
#[command(after_help = "A cluster on one machine:\n  textgcn-ballista scheduler --bind 127.0.0.1:50050 &\n  textgcn-ballista executor --scheduler 127.0.0.1:50050 --port 50051 --grpc-port 50052 --work-dir /tmp/e1 &\n  textgcn-ballista executor --scheduler 127.0.0.1:50050 --port 50061 --grpc-port 50062 --work-dir /tmp/e2 &\n  textgcn build --engine ballista --cluster df://127.0.0.1:50050 --config configs/20ng.toml\n\nThe scheduler and the executors must see the store at the path the build gives it.\nLogs go to stderr (RUST_LOG=debug for more).")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a scheduler: plans the jobs that `textgcn build` submits and
    /// hands their tasks to the executors.
    Scheduler {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:50050")]
        bind: SocketAddr,
        /// Seconds without a heartbeat after which an executor is taken for
        /// dead and its tasks are run again elsewhere.
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(2..))]
        executor_timeout: u64,
    },
    /// Run an executor: runs tasks, holds their shuffle files in its work
    /// directory and serves them to the others.
    Executor {
        /// The scheduler, HOST:PORT.
        #[arg(long, default_value = "127.0.0.1:50050", value_parser = parse_host_port)]
        scheduler: (String, u16),
        /// Host to listen on, as the others reach it.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// Port of its Arrow Flight service (shuffle data).
        #[arg(long, default_value_t = 50051)]
        port: u16,
        /// Port of its gRPC service (tasks).
        #[arg(long, default_value_t = 50052)]
        grpc_port: u16,
        /// Tasks it runs at once (default: the machine's cores).
        #[arg(long)]
        slots: Option<usize>,
        /// Where its shuffle and spill files go.
        #[arg(long)]
        work_dir: PathBuf,
        /// Its memory pool (e.g. 600MiB), spilling beyond it; default:
        /// Ballista's share of the machine's or the cgroup's memory.
        #[arg(long, value_name = "SIZE")]
        memory_pool: Option<bytesize::ByteSize>,
        /// Seconds between its heartbeats (keep it below the scheduler's
        /// --executor-timeout).
        #[arg(long, default_value_t = 10)]
        heartbeat: u64,
    },
}

/// HOST:PORT.
fn parse_host_port(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s.rsplit_once(':').ok_or_else(|| format!("{s:?}: give HOST:PORT"))?;
    let port = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    if host.is_empty() {
        return Err(format!("{s:?}: give HOST:PORT"));
    }
    Ok((host.to_owned(), port))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).try_init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_stack_size(32 << 20).build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let done = runtime.block_on(async {
        match cli.cmd {
            Cmd::Scheduler { bind, executor_timeout } => run_scheduler(SchedulerOptions { bind, executor_timeout_seconds: executor_timeout }).await,
            Cmd::Executor { scheduler, bind, port, grpc_port, slots, work_dir, memory_pool, heartbeat } => {
                let slots = slots.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
                run_executor(ExecutorOptions { scheduler, bind, port, grpc_port, slots, work_dir, memory_pool: memory_pool.map(|m| m.as_u64()), heartbeat_seconds: heartbeat }).await
            }
        }
    });
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
