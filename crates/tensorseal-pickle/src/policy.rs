//! Which globals a pickle may name: the weights allow-list and the public
//! deny-list of code execution, process, file, network and import machinery.
//!
//! [`classify`] is the single source of truth. The strict loader
//! ([`crate::load`]) accepts only [`Class::Allowed`]; the analyser
//! ([`crate::analyze`]) reports every class.

/// How a `module.name` global is judged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// On the allow-list of what weight files contain (tensor rebuild
    /// functions, storage classes, dtypes, `collections.OrderedDict`, numeric
    /// NumPy reconstruction, `_codecs.encode`, ...).
    Allowed,
    /// On the deny-list; `reason` says what the global can do.
    Dangerous {
        /// Why this global is dangerous (one short sentence).
        reason: &'static str,
    },
    /// Neither: loading it means importing and running code nobody reviewed.
    Unknown,
}

impl Class {
    /// `"allowed"`, `"dangerous"` or `"unknown"`.
    pub fn label(&self) -> &'static str {
        match self {
            Class::Allowed => "allowed",
            Class::Dangerous { .. } => "dangerous",
            Class::Unknown => "unknown",
        }
    }
}

/// Python 2 module names that Python 3's unpickler maps (`fix_imports`).
pub fn normalize_module(module: &str) -> &str {
    match module {
        "__builtin__" => "builtins",
        "copy_reg" => "copyreg",
        "cPickle" => "pickle",
        "commands" => "subprocess",
        "urllib2" => "urllib.request",
        "httplib" => "http.client",
        _ => module,
    }
}

/// Whether `module.name` deserialises a pickle from its argument.
pub(crate) fn is_pickle_loader(module: &str, name: &str) -> bool {
    let module = normalize_module(module);
    matches!(
        module,
        "pickle"
            | "_pickle"
            | "dill"
            | "dill._dill"
            | "cloudpickle"
            | "joblib"
            | "numpy"
            | "torch"
            | "torch.serialization"
    ) && matches!(
        name,
        "loads" | "_loads" | "load" | "_load" | "load_from_bytes"
    ) || (module == "torch.storage" && name == "_load_from_bytes")
}

/// The dtype objects of torch (`torch.float32` and aliases) that a pickle
/// may name with `GLOBAL torch <name>`.
pub const TORCH_DTYPES: &[&str] = &[
    "float32",
    "float",
    "float64",
    "double",
    "float16",
    "half",
    "bfloat16",
    "complex32",
    "chalf",
    "complex64",
    "cfloat",
    "complex128",
    "cdouble",
    "uint8",
    "int8",
    "int16",
    "short",
    "int32",
    "int",
    "int64",
    "long",
    "bool",
    "uint16",
    "uint32",
    "uint64",
    "float8_e4m3fn",
    "float8_e5m2",
    "float8_e4m3fnuz",
    "float8_e5m2fnuz",
    "float8_e8m0fnu",
    "float4_e2m1fn_x2",
    "qint8",
    "quint8",
    "qint32",
    "quint4x2",
    "quint2x4",
    "bits1x8",
    "bits2x4",
    "bits4x2",
    "bits8",
    "bits16",
    "uint1",
    "uint2",
    "uint3",
    "uint4",
    "uint5",
    "uint6",
    "uint7",
    "int1",
    "int2",
    "int3",
    "int4",
    "int5",
    "int6",
    "int7",
];

/// The legacy typed storage classes (`torch.FloatStorage`, ...).
pub const TORCH_STORAGES: &[&str] = &[
    "DoubleStorage",
    "FloatStorage",
    "HalfStorage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
    "BoolStorage",
    "BFloat16Storage",
    "ComplexDoubleStorage",
    "ComplexFloatStorage",
    "QUInt8Storage",
    "QInt8Storage",
    "QInt32Storage",
    "QUInt4x2Storage",
    "QUInt2x4Storage",
    "UntypedStorage",
    "TypedStorage",
];

const TORCH_REBUILD: &[&str] = &[
    "_rebuild_tensor",
    "_rebuild_tensor_v2",
    "_rebuild_tensor_v3",
    "_rebuild_parameter",
    "_rebuild_parameter_with_state",
    "_rebuild_qtensor",
    "_rebuild_sparse_tensor",
    "_rebuild_meta_tensor_no_storage",
    "_rebuild_wrapper_subclass",
    "_rebuild_device_tensor_from_numpy",
    "_rebuild_device_tensor_from_cpu_tensor",
];

const TORCH_QSCHEMES: &[&str] = &[
    "per_tensor_affine",
    "per_tensor_symmetric",
    "per_channel_affine",
    "per_channel_symmetric",
    "per_channel_affine_float_qparams",
];

const TORCH_TENSOR_TYPES: &[&str] = &[
    "Tensor",
    "FloatTensor",
    "DoubleTensor",
    "HalfTensor",
    "BFloat16Tensor",
    "ByteTensor",
    "CharTensor",
    "ShortTensor",
    "IntTensor",
    "LongTensor",
    "BoolTensor",
];

/// Whether `module.name` is on the allow-list of what weight files contain.
pub fn is_allowed(module: &str, name: &str) -> bool {
    let module = normalize_module(module);
    match module {
        "torch._utils" => TORCH_REBUILD.contains(&name),
        "torch._tensor" => name == "_rebuild_from_type_v2",
        "torch" => {
            TORCH_DTYPES.contains(&name)
                || TORCH_STORAGES.contains(&name)
                || TORCH_QSCHEMES.contains(&name)
                || TORCH_TENSOR_TYPES.contains(&name)
                || matches!(name, "Size" | "device")
        }
        "torch.storage" => matches!(name, "UntypedStorage" | "TypedStorage"),
        "torch.nn.parameter" => name == "Parameter",
        "torch.serialization" => name == "_get_layout",
        "collections" => matches!(name, "OrderedDict" | "Counter"),
        "_codecs" => name == "encode",
        "builtins" => matches!(
            name,
            "set" | "frozenset" | "bytearray" | "complex" | "slice"
        ),
        "numpy.core.multiarray" | "numpy._core.multiarray" => {
            matches!(name, "_reconstruct" | "scalar")
        }
        "numpy" => matches!(name, "dtype" | "ndarray"),
        "numpy.dtypes" => name.ends_with("DType") && !name.starts_with("Object"),
        _ => false,
    }
}

/// Why `module.name` is dangerous, if it is on the deny-list.
pub fn deny_reason(module: &str, name: &str) -> Option<&'static str> {
    let module = normalize_module(module);
    let top = module.split('.').next().unwrap_or(module);
    // Whole modules whose every attribute reaches the OS, the network, code
    // execution or the import system.
    let by_module = match top {
        "os" | "posix" | "nt" | "_posixsubprocess" => {
            Some("operating-system access (processes, files, environment)")
        }
        "subprocess" | "pty" | "multiprocessing" | "popen2" => Some("starts processes"),
        "shutil" | "tempfile" | "glob" | "fileinput" => Some("file-system access"),
        "socket" | "_socket" | "ssl" | "urllib" | "http" | "requests" | "httpx" | "aiohttp"
        | "ftplib" | "smtplib" | "telnetlib" | "poplib" | "imaplib" | "xmlrpc" | "socketserver"
        | "urllib3" => Some("network access"),
        "webbrowser" => Some("opens URLs in a browser"),
        "ctypes" | "_ctypes" | "cffi" => Some("calls native code and reads/writes raw memory"),
        "runpy" | "code" | "codeop" | "pdb" | "bdb" | "trace" | "timeit" | "profile"
        | "cProfile" | "doctest" => Some("runs arbitrary Python code"),
        "importlib" | "imp" | "pkgutil" | "zipimport" => {
            Some("import machinery: loads arbitrary modules")
        }
        "pip" | "setuptools" | "distutils" | "ensurepip" => Some("installs and runs packages"),
        "marshal" => Some("deserialises code objects"),
        "pickle" | "_pickle" | "dill" | "cloudpickle" | "joblib" | "shelve" => {
            Some("loads a nested pickle, which can run code")
        }
        "sys" => Some("interpreter internals (sys.modules, sys.settrace, ...)"),
        "signal" | "threading" | "_thread" | "gc" | "atexit" => {
            Some("interpreter and process control")
        }
        "types" => Some("builds code, functions or modules"),
        "functools" => Some("composes calls (partial/reduce) to smuggle arbitrary calls"),
        "operator" => Some("attrgetter/methodcaller reach arbitrary attributes and methods"),
        "inspect" => Some("reaches frames, globals and code"),
        "asyncio" => Some("starts processes and network connections"),
        "platform" => Some("runs shell commands (platform.popen)"),
        "io" | "_io" | "codecs" | "pathlib" => {
            if matches!(name, "encode" | "decode") && top == "codecs" {
                None
            } else {
                Some("file-system access")
            }
        }
        "yaml" => Some("unsafe YAML loading constructs arbitrary objects"),
        _ => None,
    };
    if by_module.is_some() {
        return by_module;
    }
    match (module, name) {
        ("builtins", "eval" | "exec" | "compile" | "execfile") => {
            Some("runs arbitrary Python code")
        }
        ("builtins", "__import__") => Some("import machinery: loads arbitrary modules"),
        ("builtins", "getattr" | "setattr" | "delattr" | "vars" | "globals" | "locals" | "dir") => {
            Some("reaches arbitrary attributes, e.g. getattr(os, 'system')")
        }
        ("builtins", "open" | "file") => Some("file-system access"),
        ("builtins", "breakpoint" | "input" | "help" | "exit" | "quit" | "memoryview") => {
            Some("interpreter control")
        }
        ("builtins", "type" | "object" | "super" | "classmethod" | "staticmethod" | "property") => {
            Some("builds classes and descriptors to smuggle arbitrary calls")
        }
        ("builtins", "apply" | "map" | "filter" | "reduce" | "iter" | "next") => {
            Some("applies arbitrary callables")
        }
        ("torch.hub", _) => Some("downloads and runs code from the network"),
        ("torch", "load") | ("torch.serialization", "load") => {
            Some("loads a nested checkpoint, which can run code")
        }
        ("torch.jit", _) | ("torch.jit._serialization", _) | ("torch._jit_internal", _) => {
            Some("loads and runs TorchScript code")
        }
        ("torch.package", _) | ("torch._ops", _) | ("torch.ops", _) => {
            Some("runs packaged code or arbitrary operators")
        }
        ("torch.storage", "_load_from_bytes") => {
            Some("loads a nested checkpoint, which can run code")
        }
        ("numpy", "load" | "loads") | ("numpy.lib.npyio", _) | ("numpy.lib.format", _) => {
            Some("loads a nested pickle, which can run code")
        }
        ("numpy.testing._private.utils", _) | ("numpy.distutils", _) => Some("runs shell commands"),
        ("copyreg", "_reconstructor") => None,
        _ => None,
    }
}

/// Classifies `module.name`.
///
/// ```
/// use tensorseal_pickle::policy::{classify, Class};
/// assert_eq!(classify("torch._utils", "_rebuild_tensor_v2"), Class::Allowed);
/// assert!(matches!(classify("os", "system"), Class::Dangerous { .. }));
/// assert_eq!(classify("mypackage", "MyModel"), Class::Unknown);
/// ```
pub fn classify(module: &str, name: &str) -> Class {
    if is_allowed(module, name) {
        Class::Allowed
    } else if let Some(reason) = deny_reason(module, name) {
        Class::Dangerous { reason }
    } else {
        Class::Unknown
    }
}

/// The restore functions torch.jit's unpickler resolves under `torch.jit._pickle`.
const JIT_PICKLE_NAMES: &[&str] = &[
    "build_intlist",
    "build_tensorlist",
    "build_doublelist",
    "build_boollist",
    "build_tensor_from_id",
    "restore_type_tag",
];

/// Name components that reach code compilation, import machinery, processes, files or
/// libraries, whatever module prefix precedes them.
const SCRIPT_DANGEROUS_PARTS: &[&str] = &[
    "eval",
    "exec",
    "execfile",
    "compile",
    "import_module",
    "importlib",
    "builtins",
    "runpy",
    "subprocess",
    "os",
    "posix",
    "nt",
    "sys",
    "ctypes",
    "marshal",
    "pickle",
    "_pickle",
    "cPickle",
    "dill",
    "code",
    "codeop",
    "getattr",
    "setattr",
    "globals",
    "locals",
    "vars",
    "open",
    "system",
    "popen",
    "CompilationUnit",
    "_jit_script_compile",
    "_jit_script_class_compile",
    "load_library",
    "from_file",
];

/// How a global of a TorchScript archive's pickles (`data.pkl`, `constants.pkl`,
/// `*.debug_pkl`) is judged, when its name carries one of
/// TorchScript's own prefixes (`None`: the normal rules apply unchanged).
///
/// `__torch__.<class>` names a class compiled from the archive's `code/` (its code is
/// reported and checked separately) and `torch.jit._pickle.<fn>` one of torch.jit's restore
/// functions. The prefix earns nothing else: a dunder component, or a component that reaches
/// compilation, import machinery, processes or files, is dangerous; so is any split of the
/// remainder that the deny-list knows (`__torch__.builtins.exec`); other
/// `torch.jit._pickle` names are unknown.
///
/// ```
/// use tensorseal_pickle::policy::{classify_torchscript, Class};
/// assert_eq!(classify_torchscript("__torch__.MyModule", "forward"), Some(Class::Allowed));
/// assert!(matches!(
///     classify_torchscript("__torch__.builtins", "exec"),
///     Some(Class::Dangerous { .. })
/// ));
/// assert_eq!(classify_torchscript("collections", "OrderedDict"), None);
/// ```
pub fn classify_torchscript(module: &str, name: &str) -> Option<Class> {
    let q = format!("{module}.{name}");
    let (rest, jit) = match (
        q.strip_prefix("__torch__."),
        q.strip_prefix("torch.jit._pickle."),
    ) {
        (Some(r), _) => (r, false),
        (None, Some(r)) => (r, true),
        (None, None) => return None,
    };
    let parts: Vec<&str> = rest.split('.').collect();
    if parts.iter().any(|p| p.starts_with("__")) {
        return Some(Class::Dangerous {
            reason: "attribute access through a dunder name under a TorchScript prefix",
        });
    }
    if parts.iter().any(|p| SCRIPT_DANGEROUS_PARTS.contains(p)) {
        return Some(Class::Dangerous {
            reason: "reaches code compilation, import machinery, processes or files under a TorchScript prefix",
        });
    }
    for i in 1..parts.len() {
        let module = parts.get(..i).unwrap_or(&[]).join(".");
        let name = parts.get(i..).unwrap_or(&[]).join(".");
        if let Class::Dangerous { reason } = classify(&module, &name) {
            return Some(Class::Dangerous { reason });
        }
    }
    if parts
        .iter()
        .any(|p| p.is_empty() || !p.chars().all(|c| c.is_alphanumeric() || c == '_'))
    {
        return Some(Class::Unknown);
    }
    if jit {
        return Some(
            if parts.len() == 1 && parts.iter().all(|p| JIT_PICKLE_NAMES.contains(p)) {
                Class::Allowed
            } else {
                Class::Unknown
            },
        );
    }
    Some(Class::Allowed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_covers_weight_files() {
        for (m, n) in [
            ("torch._utils", "_rebuild_tensor"),
            ("torch._utils", "_rebuild_tensor_v2"),
            ("torch._utils", "_rebuild_parameter"),
            ("torch._utils", "_rebuild_parameter_with_state"),
            ("torch", "FloatStorage"),
            ("torch", "BFloat16Storage"),
            ("torch.storage", "UntypedStorage"),
            ("torch", "Size"),
            ("torch", "device"),
            ("torch", "float8_e4m3fn"),
            ("collections", "OrderedDict"),
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "dtype"),
            ("numpy", "ndarray"),
            ("_codecs", "encode"),
            ("__builtin__", "set"),
        ] {
            assert_eq!(classify(m, n), Class::Allowed, "{m}.{n}");
        }
    }

    #[test]
    fn deny_list_names_the_classics() {
        for (m, n) in [
            ("os", "system"),
            ("posix", "system"),
            ("nt", "system"),
            ("subprocess", "Popen"),
            ("subprocess", "check_output"),
            ("builtins", "eval"),
            ("builtins", "exec"),
            ("builtins", "compile"),
            ("builtins", "__import__"),
            ("builtins", "getattr"),
            ("builtins", "open"),
            ("builtins", "breakpoint"),
            ("__builtin__", "eval"),
            ("importlib", "import_module"),
            ("runpy", "run_path"),
            ("pip", "main"),
            ("pip._internal", "main"),
            ("marshal", "loads"),
            ("pickle", "loads"),
            ("_pickle", "loads"),
            ("shutil", "rmtree"),
            ("socket", "socket"),
            ("urllib.request", "urlopen"),
            ("requests", "get"),
            ("webbrowser", "open"),
            ("pty", "spawn"),
            ("ctypes", "CDLL"),
            ("torch.hub", "load"),
            ("torch", "load"),
            ("torch.jit", "load"),
            ("code", "InteractiveInterpreter"),
            ("types", "CodeType"),
            ("types", "FunctionType"),
            ("operator", "attrgetter"),
            ("operator", "methodcaller"),
            ("functools", "partial"),
            ("sys", "modules"),
        ] {
            assert!(matches!(classify(m, n), Class::Dangerous { .. }), "{m}.{n}");
        }
    }

    #[test]
    fn unknown_is_the_default() {
        assert_eq!(classify("torch", "system"), Class::Unknown);
        assert_eq!(classify("mymodel", "Net"), Class::Unknown);
        assert_eq!(classify("numpy.dtypes", "ObjectDType"), Class::Unknown);
        assert_eq!(classify("codecs", "encode"), Class::Unknown);
    }
}

#[cfg(test)]
mod torchscript_tests {
    use super::*;

    fn torchscript_class(q: &str) -> Option<Class> {
        let (module, name) = q.rsplit_once('.').unwrap_or((q, ""));
        classify_torchscript(module, name)
    }

    #[test]
    fn torchscript_prefixes_pass_only_plain_class_names() {
        for ok in [
            "__torch__.MyModule",
            "__torch__.torch.nn.modules.linear.Linear",
            "torch.jit._pickle.build_intlist",
        ] {
            assert_eq!(torchscript_class(ok), Some(Class::Allowed), "{ok}");
        }
        for bad in [
            "__torch__.builtins.exec",
            "__torch__.x.__globals__",
            "__torch__.__builtins__.eval",
            "torch.jit._pickle.__builtins__",
            "torch.jit._pickle.eval",
            "__torch__.torch.jit.CompilationUnit",
            "__torch__.importlib.import_module",
            "__torch__.torch.from_file",
        ] {
            assert!(
                matches!(torchscript_class(bad), Some(Class::Dangerous { .. })),
                "{bad}"
            );
        }
        assert_eq!(
            torchscript_class("torch.jit._pickle.other"),
            Some(Class::Unknown)
        );
        assert_eq!(torchscript_class("collections.OrderedDict"), None);
    }
}
