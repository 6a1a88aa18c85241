//! Tests that need a program this project does not build (SIPp, Kamailio, strace, Chromium).
//! Their files run with this harness (`harness = false` in Cargo.toml, libtest-mimic), which
//! decides at run time what libtest can only decide at build time: without the program, in
//! CI (`CI` set) each test fails; elsewhere each is reported `ignored` in the summary, under
//! a line saying which program is missing and how to install it. A missing peer is never a
//! silent pass, and `--include-ignored` runs them (to fail, saying what is missing).

use libtest_mimic::{Arguments, Failed, Trial};
use std::path::PathBuf;
use std::process::ExitCode;

/// A program some tests need, and the Debian package that installs it.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: &'static str,
    pub package: &'static str,
    pub path: Option<PathBuf>,
    /// Why an installed program cannot be used here (see [`Program::works`]).
    pub refused: Option<String>,
}

impl Program {
    /// Looks for `name` on PATH and in `also` (e.g. `/usr/sbin`, which is not on every PATH;
    /// or a plug-in's directory, for a file that is not a program).
    pub fn find(name: &'static str, package: &'static str, also: &[&str]) -> Program {
        let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|p| std::env::split_paths(&p).collect())
            .unwrap_or_default();
        dirs.extend(also.iter().map(PathBuf::from));
        let path = dirs.into_iter().map(|d| d.join(name)).find(|p| p.is_file());
        Program {
            name,
            package,
            path,
            refused: None,
        }
    }

    /// This program, counted as missing if running it with `args` fails: what it does may
    /// be refused by the machine (user namespaces in a container, for `unshare`), which
    /// `why` names.
    pub fn works(mut self, args: &[&str], why: &str) -> Program {
        let Some(path) = &self.path else {
            return self;
        };
        let ran = std::process::Command::new(path)
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if !ran.is_ok_and(|status| status.success()) {
            self.path = None;
            self.refused = Some(format!(
                "`{} {}` fails here: {why}",
                self.name,
                args.join(" ")
            ));
        }
        self
    }

    /// Where it is; for a test that runs only when it was found.
    pub fn path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| panic!("{}", self.missing()))
    }

    fn missing(&self) -> String {
        match &self.refused {
            Some(why) => why.clone(),
            None => format!(
                "`{}` is not installed (Debian package `{}`, installed by .ci/run)",
                self.name, self.package
            ),
        }
    }
}

/// One test: its name and its body. A name may be built at run time (a table of cases).
pub type Test = (String, Box<dyn FnOnce() + Send>);

/// Tests, as [`trials!`] lists them.
pub type Tests = Vec<Test>;

/// A [`Test`] from its name and body.
pub fn test(name: impl Into<String>, body: impl FnOnce() + Send + 'static) -> Test {
    (name.into(), Box::new(body))
}

/// Runs `tests` as this binary's tests, each needing `program`.
pub fn run(program: &Program, tests: Tests) -> ExitCode {
    run_groups(vec![(program.clone(), tests)])
}

/// Runs groups of tests as this binary's tests, each group needing its own program.
pub fn run_groups(groups: Vec<(Program, Tests)>) -> ExitCode {
    let args = Arguments::from_args();
    let trials = groups
        .into_iter()
        .flat_map(|(program, tests)| trials(&args, &program, tests))
        .collect();
    libtest_mimic::run(&args, trials).exit_code()
}

/// `tests` as trials that need `program`, saying once if it is missing.
fn trials(args: &Arguments, program: &Program, tests: Tests) -> Vec<Trial> {
    let in_ci = std::env::var_os("CI").is_some();
    let missing = program.path.is_none();
    if missing && !args.list {
        if in_ci {
            eprintln!(
                "FAILING: {}, and CI is set: these tests must run",
                program.missing()
            );
        } else {
            eprintln!(
                "SKIPPED: {} tests, listed as ignored below: {} (in CI, with CI set, they fail)",
                tests.len(),
                program.missing()
            );
        }
    }
    tests
        .into_iter()
        .map(|(name, test)| {
            let found = program.path.is_some();
            let why = program.missing();
            let trial = Trial::test(name, move || match found {
                true => {
                    test();
                    Ok(())
                }
                false => Err(Failed::from(why)),
            });
            match missing {
                true if !in_ci => trial
                    .with_ignored_flag(true)
                    .with_kind(format!("no {}", program.name)),
                _ => trial,
            }
        })
        .collect()
}

/// `trials![a, b]`: each function with its name, for [`run`].
#[macro_export]
macro_rules! trials {
    ($($name:ident),* $(,)?) => {
        vec![$(common::needs::test(stringify!($name), $name)),*]
    };
}
