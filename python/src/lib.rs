//! `textgcn._textgcn`: the native half of the `textgcn` Python package.
//!
//! It wraps the pipeline library (never the trainer: no second libtorch in
//! a Python process that has its own): [`build`] and [`status`] of a config
//! with the CLI's progress and errors, and [`open`], which checks a built
//! ref the way the trainer does (`BuiltGraph::open`) and returns a
//! [`Graph`] whose columns are NumPy arrays over the store's memory maps
//! (see `zero_copy`). The Python package around it (`python/textgcn/`)
//! adds the SciPy, PyTorch, PyG and table conversions, and the stubs.
//!
//! Errors are Python exceptions of a small hierarchy under `TextgcnError`,
//! carrying where the problem is (`path`, `line`, `stage`, `object`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use numpy::{PyArray1, PyArray2};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError};
use pyo3::BoundObject;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};
use textgcn_artifacts::{ObjectId, OpenMode, Store};
use textgcn_cli::ui::Verbosity;
use textgcn_pipeline::config::{self, LoadedConfig};
use textgcn_pipeline::stages::{self, BuiltGraph, Graph as GraphStage, Ingest, OutputKey, PipelineError, Splits, Tokenize, Vocab};
use textgcn_pipeline::terminal;

mod zero_copy;

create_exception!(_textgcn, TextgcnError, PyException, "Base class of every textgcn error; `str(e)` says what and where.");
create_exception!(_textgcn, ConfigError, TextgcnError, "A config that cannot be loaded or built; `path` and `line` (or None) say where.");
create_exception!(_textgcn, InputError, TextgcnError, "A corpus or data file that cannot be used; `path` and `line` (or None) say where.");
create_exception!(_textgcn, StoreError, TextgcnError, "The artifact store failed (I/O, locks, not a store); `path` says which, when known.");
create_exception!(
    _textgcn,
    DamagedError,
    StoreError,
    "An object, record or ref that is corrupt, missing or not what the stages make; `object` names it when it is one. `textgcn.build(config, repair=True)` moves the damage to quarantine/ and rebuilds it."
);
create_exception!(_textgcn, RefNotFoundError, StoreError, "No ref of that name in the store (nothing built for that config yet).");
create_exception!(_textgcn, StaleError, TextgcnError, "A built ref older than its config; `stage` is the first stage that would rerun.");

/// The message with its causes, as the CLI prints it (`a: b: c`).
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A Python exception of `E` with `message` and the attributes given.
fn raise<E: pyo3::PyTypeInfo>(py: Python<'_>, message: String, attrs: &[(&str, Option<Py<PyAny>>)]) -> PyErr {
    let err = PyErr::new::<E, _>(message);
    for (name, value) in attrs {
        // Setting an attribute of a fresh exception instance cannot fail
        // in practice; if it did, the message still says everything.
        let _ = err.value(py).setattr(*name, value.as_ref().map(|v| v.bind(py).clone()));
    }
    err
}

/// `value` as an exception attribute.
fn attr<'py>(py: Python<'py>, value: impl IntoPyObject<'py>) -> Option<Py<PyAny>> {
    value.into_pyobject(py).ok().map(|b| b.into_any().unbind())
}

fn path_obj(py: Python<'_>, p: &Path) -> Option<Py<PyAny>> {
    attr(py, p.display().to_string())
}

fn store_err(py: Python<'_>, e: &textgcn_artifacts::StoreError) -> PyErr {
    use textgcn_artifacts::StoreError as S;
    let message = chain(e);
    match e {
        S::Corrupt { id, path, .. } | S::Missing { id, path } => raise::<DamagedError>(py, message, &[("object", attr(py, id.as_str())), ("path", path_obj(py, path))]),
        S::Format { id, .. } => raise::<DamagedError>(py, message, &[("object", attr(py, id.as_str())), ("path", None)]),
        S::Damaged { path, .. } | S::BadMetadata { path, .. } => raise::<DamagedError>(py, message, &[("object", None), ("path", path_obj(py, path))]),
        S::NoSuchRef { store, .. } => raise::<RefNotFoundError>(py, message, &[("path", path_obj(py, store))]),
        S::Io { path, .. } | S::NotAStore { path, .. } => raise::<StoreError>(py, message, &[("path", path_obj(py, path))]),
        _ => raise::<StoreError>(py, message, &[("path", None)]),
    }
}

/// The Python exception for a pipeline error.
fn pipeline_err(py: Python<'_>, e: &PipelineError) -> PyErr {
    match e {
        PipelineError::Config(c) => raise::<ConfigError>(py, c.to_string(), &[("path", path_obj(py, &c.path)), ("line", c.line.and_then(|l| attr(py, l)))]),
        PipelineError::Ingest(i) => {
            let (path, line) = i.location();
            raise::<InputError>(py, chain(i), &[("path", path_obj(py, path)), ("line", line.and_then(|l| attr(py, l)))])
        }
        PipelineError::EmptyVocabulary { .. } => raise::<InputError>(py, e.to_string(), &[("path", None), ("line", None)]),
        PipelineError::Store(s) => store_err(py, s),
        PipelineError::Contract(m) => raise::<DamagedError>(py, m.clone(), &[("object", None), ("path", None)]),
        PipelineError::Other(m) => PyErr::new::<TextgcnError, _>(m.clone()),
    }
}

fn store_path(store: Option<PathBuf>) -> PathBuf {
    textgcn_cli::store_dir(store.as_deref())
}

fn load_config(py: Python<'_>, path: &Path) -> PyResult<LoadedConfig> {
    config::load(path).map_err(|e| pipeline_err(py, &PipelineError::Config(e)))
}

/// `memory_limit`: a size string (`"2GiB"`) or a number of bytes.
fn memory_limit(py: Python<'_>, value: Option<&Bound<'_, PyAny>>) -> PyResult<Option<bytesize::ByteSize>> {
    let Some(v) = value else { return Ok(None) };
    let size = if let Ok(n) = v.extract::<u64>() {
        bytesize::ByteSize::b(n)
    } else if let Ok(s) = v.extract::<String>() {
        s.parse::<bytesize::ByteSize>().map_err(|e| raise::<ConfigError>(py, format!("memory_limit {s:?}: {e} (give a size such as \"4GiB\" or \"512MB\")"), &[("path", None), ("line", None)]))?
    } else {
        return Err(PyTypeError::new_err("memory_limit: give a size such as \"4GiB\" or a number of bytes"));
    };
    config::check_memory_limit(size).map_err(|e| raise::<ConfigError>(py, format!("memory_limit: {e}"), &[("path", None), ("line", None)]))?;
    Ok(Some(size))
}

/// Builds a config into a store; returns the build report as JSON (the
/// `textgcn build --json` document, plus the CLI's table under `table`).
///
/// `progress`: `None` for silence, `True` for the CLI's spinner and bar on
/// stderr, or a callable given one dict per event: `{"event": "stage",
/// "stage", "status", "seconds", "why", "next"}` when a stage ends and
/// `{"event": "progress", "stage", "phase", "done", "total"}` while it runs
/// (at most once per percent). An exception raised by the callable stops
/// the reports and is raised when the build returns.
#[pyfunction]
#[pyo3(signature = (config, store=None, memory_limit=None, repair=false, progress=None))]
fn build(py: Python<'_>, config: PathBuf, store: Option<PathBuf>, memory_limit: Option<&Bound<'_, PyAny>>, repair: bool, progress: Option<Bound<'_, PyAny>>) -> PyResult<String> {
    let mut cfg = load_config(py, &config)?;
    if let Some(limit) = self::memory_limit(py, memory_limit)? {
        cfg.config.build.memory_limit = Some(limit);
    }
    let root = store_path(store);
    let terminal = progress.as_ref().is_some_and(|p| p.is_truthy().unwrap_or(false) && p.is_instance_of::<pyo3::types::PyBool>());
    let callback: Option<Py<PyAny>> = progress.filter(|p| p.is_callable()).map(Bound::unbind);
    let failed: Mutex<Option<PyErr>> = Mutex::new(None);
    let result = py.detach(|| -> Result<stages::BuildReport, PipelineError> {
        if repair {
            match Store::open(&root, OpenMode::Read) {
                Ok(s) => drop(s.repair()?),
                Err(textgcn_artifacts::StoreError::NotAStore { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let store = Store::open(&root, OpenMode::Write)?;
        if terminal {
            return terminal::build(&store, &cfg, Verbosity::Normal, |_| {});
        }
        let Some(cb) = &callback else {
            return terminal::build(&store, &cfg, Verbosity::Quiet, |_| {});
        };
        // One event: a dict filled by `fill`, given to the callable.
        let call = |fill: &dyn Fn(&Bound<'_, PyDict>) -> PyResult<()>| {
            if failed.lock().expect("not poisoned").is_some() {
                return;
            }
            Python::attach(|py| {
                let d = PyDict::new(py);
                if let Err(e) = fill(&d).and_then(|()| cb.call1(py, (d,)).map(drop)) {
                    *failed.lock().expect("not poisoned") = Some(e);
                }
            });
        };
        let last = Mutex::new((String::new(), u64::MAX));
        let on_progress = |stage: &str, phase: &str, done: u64, total: u64| {
            let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
            {
                let mut l = last.lock().expect("not poisoned");
                let key = format!("{stage}/{phase}");
                if l.0 == key && l.1 == percent {
                    return;
                }
                *l = (key, percent);
            }
            call(&|d| {
                d.set_item("event", "progress")?;
                d.set_item("stage", stage)?;
                d.set_item("phase", phase)?;
                d.set_item("done", done)?;
                d.set_item("total", total)
            });
        };
        let on_stage = |r: &stages::StageReport, next: Option<&str>| {
            call(&|d| {
                d.set_item("event", "stage")?;
                d.set_item("stage", &r.stage)?;
                d.set_item("status", r.status.to_string())?;
                d.set_item("seconds", r.seconds)?;
                d.set_item("why", &r.why)?;
                d.set_item("next", next)
            });
        };
        terminal::build_reporting(&store, &cfg, on_stage, &on_progress)
    });
    let report = result.map_err(|e| pipeline_err(py, &e))?;
    if let Some(e) = failed.into_inner().expect("not poisoned") {
        return Err(e);
    }
    let mut json = serde_json::to_value(&report).map_err(|e| PyErr::new::<TextgcnError, _>(e.to_string()))?;
    json["table"] = terminal::report_table(&report).into();
    Ok(json.to_string())
}

/// What a build of the config would do, stage by stage, as JSON (the
/// `textgcn status --json` document): `fresh` or `stale` with why.
#[pyfunction]
#[pyo3(signature = (config, store=None))]
fn status(py: Python<'_>, config: PathBuf, store: Option<PathBuf>) -> PyResult<String> {
    let cfg = load_config(py, &config)?;
    let root = store_path(store);
    let st = py.detach(|| stages::status_at(&root, &cfg));
    let st = st.map_err(|e| pipeline_err(py, &e))?;
    serde_json::to_string(&st).map_err(|e| PyErr::new::<TextgcnError, _>(e.to_string()))
}

/// The refs (built configs) of a store, by name.
#[pyfunction]
#[pyo3(signature = (store=None))]
fn refs(py: Python<'_>, store: Option<PathBuf>) -> PyResult<Vec<String>> {
    let root = store_path(store);
    let s = Store::open(&root, OpenMode::Read).map_err(|e| store_err(py, &e))?;
    s.ref_names().map_err(|e| store_err(py, &e))
}

/// Opens a built graph: ref `name` of the store, or the ref of `config`
/// (then refused with `StaleError` when the config has changed since it
/// was built, as the trainer refuses it). Every object is verified against
/// its hash on the way, and the graph's structure checked.
#[pyfunction]
#[pyo3(signature = (store=None, name=None, config=None))]
fn open(py: Python<'_>, store: Option<PathBuf>, name: Option<String>, config: Option<PathBuf>) -> PyResult<Graph> {
    let root = store_path(store);
    let cfg = config.map(|c| load_config(py, &c)).transpose()?;
    let name = match (name, &cfg) {
        (Some(n), Some(c)) if n != c.config.name => {
            return Err(raise::<ConfigError>(py, format!("ref {n:?} is not the ref of {} (its name is {:?}); give one of them", c.path.display(), c.config.name), &[("path", path_obj(py, &c.path)), ("line", None)]));
        }
        (Some(n), _) => n,
        (None, Some(c)) => c.config.name.clone(),
        (None, None) => return Err(PyTypeError::new_err("open: give the ref's name or its config")),
    };
    /// What opening found: the graph, or the first stale stage and why.
    enum Opened {
        Graph(Box<(Store, BuiltGraph)>),
        Stale(String, String),
    }
    let opened = py.detach(|| -> Result<Opened, PipelineError> {
        let store = Store::open(&root, OpenMode::Read)?;
        if let Some(cfg) = &cfg
            && let Some(s) = stages::stale_stages(&store, cfg)?.first()
        {
            return Ok(Opened::Stale(s.stage.clone(), s.why.clone().unwrap_or_else(|| "changed".into())));
        }
        let g = BuiltGraph::open(&store, &name)?;
        Ok(Opened::Graph(Box::new((store, g))))
    });
    match opened.map_err(|e| pipeline_err(py, &e))? {
        Opened::Graph(b) => {
            let (store, graph) = *b;
            Ok(Graph { store, graph })
        }
        Opened::Stale(stage, why) => {
            let cfg = cfg.expect("only a config can be stale");
            Err(raise::<StaleError>(py, format!("the artifacts of {name} are stale: stage {stage} would rerun ({why}); run textgcn.build({:?}) first", cfg.path.display().to_string()), &[("stage", attr(py, stage))]))
        }
    }
}

/// The tables a graph's build holds, by the name `Graph.table_bytes` takes.
const TABLES: [(&str, OutputKey); 8] = [
    ("documents", Ingest::DOCUMENTS),
    ("tokens", Tokenize::TOKENS),
    ("vocabulary", Vocab::VOCAB),
    ("doc_tokens", Vocab::DOC_TOKENS),
    ("nodes", GraphStage::NODES),
    ("labels", GraphStage::LABELS),
    ("splits", Splits::SPLITS),
    ("held_out", Ingest::HELD_OUT),
];

/// A built graph, checked, with its columns mapped from the store.
///
/// The arrays it returns are read-only views of the mapped files; each
/// keeps this object (and so the mapping) alive. The mapping survives a
/// later `gc` unlinking the files.
#[pyclass(frozen, module = "textgcn._textgcn")]
pub struct Graph {
    store: Store,
    graph: BuiltGraph,
}

#[pymethods]
impl Graph {
    /// The ref's name.
    #[getter]
    fn name(&self) -> &str {
        &self.graph.built.name
    }

    /// The store's directory.
    #[getter]
    fn store(&self) -> PathBuf {
        self.store.root().to_path_buf()
    }

    /// Nodes: documents `0..num_docs`, then words.
    #[getter]
    fn num_nodes(&self) -> usize {
        self.graph.num_nodes()
    }

    /// Document nodes.
    #[getter]
    fn num_docs(&self) -> usize {
        self.graph.num_docs()
    }

    /// Non-zeros of `Â` (self-loops included).
    #[getter]
    fn num_edges(&self) -> usize {
        self.graph.edge_index.num_edges()
    }

    /// `edge_index`, `int64[2, E]`: row (target) and column (source) of each
    /// non-zero of `Â`, rows sorted; a view of the mapped file.
    #[getter]
    fn edge_index<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray2<i64>>> {
        let g = &slf.get().graph;
        zero_copy::borrowed_array(slf.as_any(), g.edge_index.data(), (2, g.edge_index.num_edges()))
    }

    /// `edge_attr`, `float32[E]`: the weight of each non-zero; a view of the
    /// mapped file.
    #[getter]
    fn edge_attr<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let v = slf.get().graph.edge_attr.values();
        zero_copy::borrowed_array(slf.as_any(), v, v.len())
    }

    /// `row_ptr`, `int64[N + 1]`: the CSR row offsets into `edge_index[1]`
    /// and `edge_attr`; a view of the mapped file.
    #[getter]
    fn row_ptr<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let v = slf.get().graph.row_ptr.values();
        zero_copy::borrowed_array(slf.as_any(), v, v.len())
    }

    /// Whether all three columns are views of the mapped files (false only
    /// where the files could not be mapped aligned and were read instead).
    #[getter]
    fn zero_copy(&self) -> bool {
        let g = &self.graph;
        g.edge_index.column().is_zero_copy() && g.edge_attr.column().is_zero_copy() && g.row_ptr.column().is_zero_copy()
    }

    /// The label id of each document node, `int64[num_docs]` (a copy).
    #[getter]
    fn labels<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<i64>> {
        PyArray1::from_slice(py, &self.graph.labels)
    }

    /// Label names by id.
    #[getter]
    fn label_names(&self) -> Vec<String> {
        self.graph.label_names.clone()
    }

    /// Document names by node.
    #[getter]
    fn doc_names(&self) -> Vec<String> {
        self.graph.doc_names.clone()
    }

    /// The document nodes of split `which` (`"train"`, `"val"`, `"test"`),
    /// `int64` (a copy).
    fn split_nodes<'py>(&self, py: Python<'py>, which: &str) -> PyResult<Bound<'py, PyArray1<i64>>> {
        let s = &self.graph.splits;
        let nodes = match which {
            "train" => &s.train,
            "val" => &s.val,
            "test" => &s.test,
            _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("split {which:?}: give \"train\", \"val\" or \"test\""))),
        };
        Ok(PyArray1::from_slice(py, nodes))
    }

    /// Every output of the build as `"stage.name"` -> `(object id, kind,
    /// path)`.
    fn objects(&self) -> BTreeMap<String, (String, String, PathBuf)> {
        let mut out = BTreeMap::new();
        for r in self.graph.built.records() {
            for (name, o) in &r.outputs {
                out.insert(format!("{}.{name}", r.stage), (o.id.to_string(), o.kind.to_string(), self.store.object_path(&o.id)));
            }
        }
        out
    }

    /// The summary facts a stage recorded (counts, sizes), as JSON.
    fn summary(&self, py: Python<'_>, stage: &str) -> PyResult<String> {
        let v = self.graph.built.summary(stage).map_err(|e| pipeline_err(py, &e))?;
        Ok(v.to_string())
    }

    /// The Parquet bytes of table `name` (one of `documents`, `tokens`,
    /// `vocabulary`, `doc_tokens`, `nodes`, `labels`, `splits`,
    /// `held_out`), read once and verified against its hash; `None` for
    /// `held_out` when the build held no documents out.
    fn table_bytes<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let Some((_, key)) = TABLES.iter().find(|(n, _)| *n == name) else {
            let names: Vec<&str> = TABLES.iter().map(|(n, _)| *n).collect();
            return Err(pyo3::exceptions::PyValueError::new_err(format!("no table {name:?}; the tables are {}", names.join(", "))));
        };
        let id: Option<ObjectId> = self.graph.built.optional_object(*key).map_err(|e| pipeline_err(py, &e))?.cloned();
        let Some(id) = id else {
            return Ok(None);
        };
        let bytes = py.detach(|| self.store.read_verified(&id)).map_err(|e| store_err(py, &e))?;
        Ok(Some(PyBytes::new(py, &bytes)))
    }

    fn __repr__(&self) -> String {
        format!("<textgcn.Graph {:?}: {} nodes ({} documents), {} edges, {} labels>", self.graph.built.name, self.num_nodes(), self.num_docs(), self.num_edges(), self.graph.label_names.len())
    }
}

/// The native module.
#[pymodule]
fn _textgcn(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Warnings of the pipeline on stderr, as in the CLI (`TEXTGCN_LOG`
    // raises the level).
    textgcn_cli::ui::init_logging(Verbosity::Normal);
    let py = m.py();
    m.add_function(wrap_pyfunction!(build, m)?)?;
    m.add_function(wrap_pyfunction!(status, m)?)?;
    m.add_function(wrap_pyfunction!(refs, m)?)?;
    m.add_function(wrap_pyfunction!(open, m)?)?;
    m.add_class::<Graph>()?;
    m.add("TextgcnError", py.get_type::<TextgcnError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("InputError", py.get_type::<InputError>())?;
    m.add("StoreError", py.get_type::<StoreError>())?;
    m.add("DamagedError", py.get_type::<DamagedError>())?;
    m.add("RefNotFoundError", py.get_type::<RefNotFoundError>())?;
    m.add("StaleError", py.get_type::<StaleError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
