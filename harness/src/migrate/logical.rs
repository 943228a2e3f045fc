//! The logical strategy's two halves: `pg_dump -Fc` out of one engine's database container into a
//! file of the run directory, and `pg_restore --clean` of it into another's, both through the
//! engine's `exec` with the password in the environment, never in an argument list.

use std::path::{Path, PathBuf};

use super::MOVE_TIMEOUT;
use crate::error::{HarnessError, Result};
use crate::runtime::{exec, Interrupt};
use crate::spec::Persistence;
use crate::stack::Stack;

/// `pg_dump -Fc` of the database, through the engine's exec, into a file of the run directory.
pub(super) fn pg_dump(stack: &Stack, p: &Persistence, tag: &str) -> Result<PathBuf> {
    let path = stack.record().dir().join(format!("drill-{tag}.dump"));
    let spec = db_exec(stack, p, false)?.args(["pg_dump", "-Fc", "-h", "127.0.0.1", "-U", &p.user, "-d", &p.database]);
    let mut file = std::fs::File::create(&path)?;
    let piped = exec::read_stream(&spec, MOVE_TIMEOUT, Interrupt::Allowed, |r| std::io::copy(r, &mut file))?;
    if !piped.success() {
        return Err(HarnessError::usage(format!(
            "pg_dump of {} on {} failed: {}",
            p.service,
            stack.record().runtime,
            exec::tail(piped.producer.stderr.trim(), 5)
        )));
    }
    Ok(path)
}

/// `pg_restore --clean` of `file` into the database, through the engine's exec.
pub(super) fn pg_restore(stack: &Stack, p: &Persistence, file: &Path) -> Result<()> {
    let consumer = db_exec(stack, p, true)?.args([
        "pg_restore",
        "--clean",
        "--if-exists",
        "--no-owner",
        "--single-transaction",
        "-h",
        "127.0.0.1",
        "-U",
        &p.user,
        "-d",
        &p.database,
    ]);
    let producer = exec::CommandSpec::new("cat").arg(file.display().to_string());
    let piped = exec::pipe(&producer, &consumer, MOVE_TIMEOUT, Interrupt::Allowed, |r, w| {
        std::io::copy(r, w)
    })?;
    if !piped.success() {
        return Err(HarnessError::usage(format!(
            "pg_restore into {} on {} failed: {}",
            p.service,
            stack.record().runtime,
            exec::tail(piped.consumer.stderr.trim(), 5)
        )));
    }
    Ok(())
}

/// `engine exec [-i] -e PGPASSWORD <db container>`: the password travels in the environment,
/// never in an argument list.
fn db_exec(stack: &Stack, p: &Persistence, stdin: bool) -> Result<exec::CommandSpec> {
    let containers = stack.containers()?;
    let c = containers.get(&p.service).ok_or_else(|| HarnessError::NoContainer {
        service: p.service.clone(),
        project: stack.record().project.clone(),
    })?;
    let password = p.password()?;
    let mut spec = stack.runtime().engine().arg("exec");
    if stdin {
        spec = spec.arg("-i");
    }
    Ok(spec
        .args(["-e", "PGPASSWORD"])
        .arg(c.id.clone())
        .env("PGPASSWORD", password))
}
