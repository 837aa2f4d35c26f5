//! Exit codes a script can rely on: every failure the command line reports
//! carries one of these kinds, and `main` exits with its code.

use std::fmt;

/// What kind of failure ended a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Something failed that has no kind of its own (a file that cannot be
    /// read, a server that would not start): 1.
    Other,
    /// The cluster (or a registry) refused the request: 1, as kubectl.
    Refused,
    /// The command line asks for something that cannot be (an unknown kind,
    /// a bad manifest): 2, as for flags clap refuses.
    Usage,
    /// What was named does not exist: 3.
    NotFound,
    /// No cluster could be reached (no kubeconfig, nobody listening): 4.
    Unreachable,
}

impl Failure {
    /// The process's exit code for this failure.
    pub fn code(self) -> u8 {
        match self {
            Failure::Other | Failure::Refused => 1,
            Failure::Usage => 2,
            Failure::NotFound => 3,
            Failure::Unreachable => 4,
        }
    }

    /// An error of this kind saying `message`.
    pub fn because(self, message: impl fmt::Display) -> anyhow::Error {
        anyhow::Error::new(Classified {
            failure: self,
            message: message.to_string(),
        })
    }

    /// The kind of `error` (`Other` when it carries none).
    pub fn of(error: &anyhow::Error) -> Failure {
        error
            .chain()
            .find_map(|e| e.downcast_ref::<Classified>())
            .map_or(Failure::Other, |c| c.failure)
    }
}

#[derive(Debug)]
struct Classified {
    failure: Failure,
    message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context as _;

    #[test]
    fn a_failure_keeps_its_kind_under_context() {
        let e = Failure::NotFound.because("pods \"x\" not found");
        let e = Err::<(), _>(e).context("deleting").unwrap_err();
        assert_eq!(Failure::of(&e), Failure::NotFound);
        assert_eq!(Failure::of(&e).code(), 3);
        assert_eq!(Failure::of(&anyhow::anyhow!("plain")), Failure::Other);
    }
}
