//! Findings and the catalogue of rules that produce them.

use serde::Serialize;

/// How bad a finding is. Ordered: `Info < Low < Medium < High < Critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, not a problem by itself.
    Info,
    /// Unusual but unlikely to be harmful.
    Low,
    /// Suspicious, or content that could not be checked.
    Medium,
    /// Invalid or deceptive structure, or code that cannot be proven harmless.
    High,
    /// Code execution, file, process, network or import machinery.
    Critical,
}

impl Severity {
    /// The lowercase name used in text and JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    /// The SARIF `level` for this severity.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Severity::Critical | Severity::High => "error",
            Severity::Medium => "warning",
            Severity::Low | Severity::Info => "note",
        }
    }

    /// All severities from least to most severe.
    pub const ALL: [Severity; 5] = [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ];
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule of the scanner: a stable identifier, its default severity and what it means.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// Stable identifier (`pickle-dangerous-global`, …), used in every output format.
    pub id: &'static str,
    /// Default severity of findings of this rule.
    pub severity: Severity,
    /// One-line description.
    pub summary: &'static str,
    /// Why it matters and what to do.
    pub help: &'static str,
}

macro_rules! rules {
    ($($konst:ident = $id:literal, $sev:ident, $summary:literal, $help:literal;)*) => {
        /// The identifiers of every rule, as constants.
        pub mod ids {
            $(
                #[doc = $summary]
                pub const $konst: &str = $id;
            )*
        }
        /// Every rule the scanner has, in a stable order (the SARIF rule index).
        pub const RULES: &[Rule] = &[
            $(Rule { id: $id, severity: Severity::$sev, summary: $summary, help: $help },)*
        ];
    };
}

rules! {
    PICKLE_DANGEROUS_GLOBAL = "pickle-dangerous-global", Critical,
        "A pickle imports a global that executes code, starts processes, touches files or the network, or imports modules",
        "Loading this file with pickle/torch.load runs the named function. Do not load it; convert trusted weights to safetensors.";
    PICKLE_UNKNOWN_GLOBAL = "pickle-unknown-global", High,
        "A pickle imports a global that is not on the weights allow-list",
        "Loading the file imports and may call this global. If it is expected and trusted, accept it with --allow module.name.";
    PICKLE_INVALID = "pickle-invalid", High,
        "A pickle stream is malformed, truncated, or exceeds the analysis limits",
        "A malformed stream cannot be fully analysed; loaders may still execute the part before the error.";
    PICKLE_NESTED = "pickle-nested", Medium,
        "A pickle carries another pickle or code object inside a bytes value",
        "Nested payloads are analysed too; they only run if something in the outer pickle deserialises them.";
    PICKLE_MISNAMED = "pickle-misnamed", Medium,
        "A pickle is stored under a name that does not say so",
        "Scanners that trust names skip such files; tensorseal identifies them by content.";
    FORMAT_NAME_MISMATCH = "format-name-mismatch", High,
        "The file's content does not match its extension",
        "A pickle or archive named like a safe format is a classic way to slip code past name-based checks.";
    SAFETENSORS_INVALID = "safetensors-invalid", High,
        "The safetensors header is invalid",
        "The file does not follow the safetensors format; loaders will refuse it or read it inconsistently.";
    SAFETENSORS_METADATA = "safetensors-suspicious-metadata", Medium,
        "The safetensors __metadata__ is very large or contains code, URLs or control characters",
        "Metadata is free text read by tools and model cards; check what consumes it.";
    SAFETENSORS_TENSOR_NAME = "safetensors-suspicious-tensor-name", Medium,
        "A tensor name contains path separators, '..' or control characters",
        "Tools that write tensors to files by name could be misled into writing outside their folder.";
    ZIP_INVALID = "zip-invalid", High,
        "The zip structure is malformed",
        "Different zip readers will disagree about what the archive contains.";
    ZIP_NAME_MISMATCH = "zip-name-mismatch", High,
        "A member's name in its local header differs from the central directory",
        "Readers that use local headers and readers that use the central directory see different files.";
    ZIP_HIDDEN_MEMBER = "zip-hidden-member", High,
        "Zip data that the central directory does not list (a hidden local entry, or bytes before/after the archive)",
        "Hidden entries are invisible to some readers and visible to others.";
    ZIP_FLAGS = "zip-flag-bits", High,
        "A member uses encryption, inconsistent data-descriptor or other unusual general-purpose flag bits",
        "Flag tricks make scanners skip or misread members that the loader reads fine.";
    ZIP_BAD_CRC = "zip-bad-crc", High,
        "A member's CRC-32 does not match its content",
        "The content was altered after the archive was written; strict readers refuse it, lenient ones load it.";
    ARCHIVE_DUPLICATE_NAME = "archive-duplicate-name", High,
        "Two archive members have the same name",
        "Which of the two gets loaded depends on the reader.";
    ARCHIVE_UNUSUAL_NAME = "archive-unusual-member-name", High,
        "An archive member has an absolute path, '..', backslashes or control characters in its name",
        "Extracting it could write outside the target folder, and the name can deceive reviewers.";
    ARCHIVE_INVALID = "archive-invalid", High,
        "A tar or gzip stream is malformed",
        "Readers will disagree about what the archive holds; the rest of it was not scanned.";
    ARCHIVE_LINK = "archive-link-member", Medium,
        "A tar member is a symbolic or hard link",
        "Links can point outside the extraction folder.";
    ARCHIVE_LIMIT = "archive-limit-exceeded", High,
        "An archive exceeds the scan limits (nesting depth, member count, decompressed size or ratio)",
        "Possible decompression bomb; the rest of the archive was not scanned.";
    ARCHIVE_UNSCANNABLE = "archive-unscannable", Medium,
        "Archive content that cannot be scanned (encrypted, unsupported compression or archive type)",
        "Nothing is known about what this content does; unpack it and scan the files.";
    NUMPY_OBJECT_ARRAY = "numpy-object-array", High,
        "A NumPy array with object dtype: its data is a pickle",
        "np.load(allow_pickle=True) unpickles it; the pickle is analysed and its findings reported separately.";
    NUMPY_INVALID = "numpy-invalid", High,
        "A NumPy .npy header is malformed",
        "The file does not follow the .npy format.";
    TORCH_INVALID = "torch-invalid", High,
        "A torch checkpoint does not have the expected structure",
        "torch.load may still unpickle parts of it.";
    TORCHSCRIPT_CODE = "torchscript-code", Medium,
        "A TorchScript archive: it contains code that torch.jit.load compiles and runs",
        "TorchScript code is restricted but it is code; prefer plain weights.";
    TORCHSCRIPT_FILE_ACCESS = "torchscript-file-access", Critical,
        "TorchScript code that creates, maps, writes or loads files (from_file, torch.save, load_library)",
        "torch.jit.load runs __setstate__ methods while loading: such code touches the file system before any forward call.";
    KERAS_LAMBDA = "keras-lambda-layer", High,
        "A Keras model with a Lambda layer or serialized Python function",
        "Lambda layers carry Python bytecode or source that runs when the model is loaded.";
    TF_DANGEROUS_OP = "tf-dangerous-op", Medium,
        "A TensorFlow graph uses file-system or Python-call operations",
        "Ops like ReadFile, WriteFile or PyFunc act outside the tensor graph when the model runs.";
    ONNX_EXTERNAL_DATA = "onnx-external-data-path", High,
        "An ONNX tensor's external data location is absolute or leaves the model folder",
        "onnx.load follows external-data paths: '..' or absolute locations read (or, when saving, write) files outside the model.";
    GGUF_INVALID = "gguf-invalid", High,
        "A GGUF header is malformed",
        "The file does not follow the GGUF format.";
    GGUF_CHAT_TEMPLATE = "gguf-suspicious-chat-template", High,
        "A GGUF chat template reaches for Python internals (template injection)",
        "Jinja templates that walk __class__/__globals__/__subclasses__ can run code in servers that render them unsandboxed.";
    POLYGLOT = "format-polyglot", High,
        "The file is valid as two formats at once (e.g. a pickle with a zip appended)",
        "Different loaders pick different interpretations; each one found is scanned.";
    POLICY_NOT_SAFETENSORS = "policy-not-safetensors", High,
        "A weight file that is not safetensors (policy safetensors-only)",
        "Convert it to safetensors (tensorseal convert) or remove it.";
    READ_ERROR = "read-error", High,
        "The file could not be read",
        "Check permissions and that the file still exists.";
}

/// Looks up a rule by id.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().find(|r| r.id == id)
}

/// One thing the scanner found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// The rule id (see [`RULES`]).
    pub rule: &'static str,
    /// Severity of this finding.
    pub severity: Severity,
    /// The scanned file, as given on the command line or found in a directory.
    pub path: String,
    /// Path of archive members from the outer file inwards (empty for the file itself).
    pub member: Vec<String>,
    /// Byte offset inside the innermost member (or the file), where relevant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// `module.name` of the pickle global concerned, for pickle findings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub global: Option<String>,
    /// What was found, quoting the value.
    pub message: String,
    /// Whether this finding violates the policy in force (sets exit code 1).
    pub fails_policy: bool,
}

impl Finding {
    /// `path!member!member` as shown in text output.
    pub fn location(&self) -> String {
        let mut s = self.path.clone();
        for m in &self.member {
            s.push('!');
            s.push_str(m);
        }
        s
    }
}

/// Quotes an untrusted string for a message: escapes control characters and cuts it to
/// `max` characters.
pub fn quote(s: &str, max: usize) -> String {
    let mut out = String::from("\"");
    for (i, c) in s.chars().enumerate() {
        if i >= max {
            out.push('…');
            break;
        }
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Quotes untrusted bytes (lossy UTF-8) for a message.
pub fn quote_bytes(b: &[u8], max: usize) -> String {
    quote(&String::from_utf8_lossy(b), max)
}
