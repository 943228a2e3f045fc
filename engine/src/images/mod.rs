//! Building a compose stack's images with the engine's own builder, tagged by a hash of their
//! build inputs so that an unchanged image is never rebuilt.

pub mod base;
pub mod hash;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::compose::file::{interpolate, ComposeFile};
use crate::error::{HarnessError, Result};
use crate::runtime::{exec, ImageLookup, Interrupt, Runtime};

/// Deadline for one image build.
pub const BUILD_TIMEOUT: Duration = Duration::from_secs(1200);

/// One image to build for one or more services.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildPlan {
    /// The services that use this image (same repository and build inputs).
    pub services: Vec<String>,
    /// Repository part of the reference (`localhost/phoenix/db`).
    pub repository: String,
    /// The build context, interpolated and resolved against the compose file's directory.
    pub context: PathBuf,
    /// The Dockerfile (`Dockerfile` in the context unless the service names one).
    pub dockerfile: PathBuf,
    /// Build arguments, interpolated.
    pub args: BTreeMap<String, String>,
}

impl BuildPlan {
    /// The image reference tagged with the first 12 digits of the content `hash` (`repo:h-...`).
    pub fn reference(&self, hash: &str) -> String {
        format!("{}:h-{}", self.repository, &hash[..12])
    }
}

/// How one image was obtained.
#[derive(Debug, Clone, Serialize)]
pub struct BuiltImage {
    /// The services that use it.
    pub services: Vec<String>,
    /// Its content-hashed reference.
    pub reference: String,
    /// False when the hashed tag already existed.
    pub built: bool,
    /// Seconds spent on it (building, or finding it already there).
    pub seconds: f64,
}

/// The outcome of preparing every image of a stack in one runtime.
#[derive(Debug, Clone, Serialize)]
pub struct ImagesReport {
    /// The runtime the images were prepared in.
    pub runtime: String,
    /// Whether the harness's base image had to be imported first.
    pub base_imported: bool,
    /// Each image of the stack's `build:` sections, in plan order.
    pub images: Vec<BuiltImage>,
    /// Seconds for all of it.
    pub seconds: f64,
}

impl ImagesReport {
    /// Service name to pinned image reference, for the compose override.
    pub fn service_images(&self) -> BTreeMap<String, String> {
        self.images
            .iter()
            .flat_map(|i| i.services.iter().map(move |s| (s.clone(), i.reference.clone())))
            .collect()
    }
}

/// Derives what to build from the compose file's `build:` sections (pure but for env lookup).
pub fn plan(file: &ComposeFile, lookup: &dyn Fn(&str) -> Option<String>) -> Vec<BuildPlan> {
    let mut plans: Vec<BuildPlan> = Vec::new();
    let project = file
        .dir()
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("stack")
        .to_string();
    for (name, svc) in &file.services {
        let Some(build) = &svc.build else { continue };
        let repository = svc
            .image
            .as_deref()
            .map(|i| interpolate(i, lookup))
            .map(|i| strip_tag(&i).to_string())
            .unwrap_or_else(|| format!("localhost/hydra/{project}-{name}"));
        let context = file.dir().join(interpolate(&build.context, lookup));
        let dockerfile = context.join(build.dockerfile.as_deref().unwrap_or("Dockerfile"));
        let args = build
            .args
            .iter()
            .map(|(k, v)| (k.clone(), interpolate(v, lookup)))
            .collect();
        let plan = BuildPlan {
            services: vec![name.clone()],
            repository,
            context,
            dockerfile,
            args,
        };
        if let Some(same) = plans.iter_mut().find(|p| {
            p.repository == plan.repository
                && p.context == plan.context
                && p.dockerfile == plan.dockerfile
                && p.args == plan.args
        }) {
            same.services.push(name.clone());
        } else {
            plans.push(plan);
        }
    }
    plans
}

/// `repo/name:tag` or `repo:5000/name` without its tag (digests are kept whole).
pub fn strip_tag(reference: &str) -> &str {
    if reference.contains('@') {
        return reference;
    }
    match reference.rfind(':') {
        Some(i) if !reference[i..].contains('/') => &reference[..i],
        _ => reference,
    }
}

/// Builds every image of `file` that is missing in `runtime`, in plan order.
pub fn prepare(runtime: &Runtime, file: &ComposeFile, on_progress: &mut dyn FnMut(&str)) -> Result<ImagesReport> {
    let started = Instant::now();
    let lookup = |k: &str| std::env::var(k).ok();
    let plans = plan(file, &lookup);
    let mut base_imported = false;
    let mut images = Vec::new();
    let mut base_ids: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let existing = if plans.is_empty() {
        ImageLookup::Listed(Default::default())
    } else {
        runtime.image_lookup()?
    };
    for plan in &plans {
        let dockerfile_text = std::fs::read_to_string(&plan.dockerfile).map_err(|e| HarnessError::Compose {
            hint: None,
            path: file.path.clone(),
            reason: format!(
                "services {:?}: cannot read {}: {e}",
                plan.services,
                plan.dockerfile.display()
            ),
        })?;
        let bases = hash::base_images(&dockerfile_text, &plan.args);
        let mut ids = Vec::new();
        for b in &bases {
            if !base_ids.contains_key(b) {
                let id = match existing.id(b)? {
                    Some(id) => id,
                    None => {
                        if b == base::BASE_IMAGE {
                            base_imported |= base::ensure(runtime)?;
                        }
                        runtime.image_id(b)?.unwrap_or_else(|| b.clone())
                    }
                };
                base_ids.insert(b.clone(), id);
            }
            ids.push(base_ids[b].clone());
        }
        let digest = hash::content_hash(&plan.context, &plan.dockerfile, &plan.args, &ids)?;
        let reference = plan.reference(&digest);
        let t = Instant::now();
        let built = if existing.id(&reference)?.is_some() {
            false
        } else {
            on_progress(&format!("building {} ({})", reference, plan.services.join(", ")));
            let mut spec = runtime.engine().arg("build").args(runtime.build_args());
            spec = spec
                .arg("-f")
                .arg(plan.dockerfile.display().to_string())
                .arg("-t")
                .arg(&reference);
            spec = spec.arg("--label").arg(format!("io.hydra.content-hash={digest}"));
            for (k, v) in &plan.args {
                spec = spec.arg("--build-arg").arg(format!("{k}={v}"));
            }
            spec = spec.arg(plan.context.display().to_string());
            exec::run_ok(&spec, BUILD_TIMEOUT, Interrupt::Allowed)?;
            true
        };
        images.push(BuiltImage {
            services: plan.services.clone(),
            reference,
            built,
            seconds: t.elapsed().as_secs_f64(),
        });
    }
    Ok(ImagesReport {
        runtime: runtime.kind().to_string(),
        base_imported,
        images,
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;
    use std::path::Path;

    #[rstest]
    #[case("localhost/phoenix/db:dev", "localhost/phoenix/db")]
    #[case("localhost:5000/phoenix/db", "localhost:5000/phoenix/db")]
    #[case("localhost:5000/phoenix/db:1.2", "localhost:5000/phoenix/db")]
    #[case("busybox", "busybox")]
    #[case("x@sha256:abc", "x@sha256:abc")]
    fn strips_tags_not_ports(#[case] input: &str, #[case] expected: &str) {
        assert_eq!(strip_tag(input), expected);
    }

    #[test]
    fn plans_one_build_per_distinct_input_and_names_images() {
        let text = r#"
services:
  a:
    image: ${IMG_A:-localhost/p/a:dev}
    build: {context: ../ctx, dockerfile: Containerfile, args: {SERVICE: a}}
  b:
    image: localhost/p/b:dev
    build: {context: ../ctx, dockerfile: Containerfile, args: {SERVICE: b}}
  c:
    build: ../other
  d:
    image: busybox
"#;
        let f = ComposeFile::parse(Path::new("/w/compose/s.yml"), text).unwrap();
        let plans = plan(&f, &|_| None);
        assert_eq!(plans.len(), 3);
        assert_eq!(plans[0].repository, "localhost/p/a");
        assert_eq!(plans[0].dockerfile, Path::new("/w/compose/../ctx/Containerfile"));
        assert_eq!(plans[2].repository, "localhost/hydra/compose-c");
        assert_eq!(plans[2].dockerfile, Path::new("/w/compose/../other/Dockerfile"));
        assert_eq!(plans[0].reference("0123456789abcdef"), "localhost/p/a:h-0123456789ab");
        let overridden = plan(&f, &|k| (k == "IMG_A").then(|| "localhost/q/a:x".to_string()));
        assert_eq!(overridden[0].repository, "localhost/q/a");
    }
}
