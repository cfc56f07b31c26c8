//! Background work the window waits for, as one value: no flag beside a result to keep in step.

/// A piece of background work and its answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum Job<T> {
    /// Not asked for (or its answer no longer applies).
    #[default]
    Idle,
    Running,
    Done(T),
    /// Why it failed, in words.
    Failed(String),
}

impl<T> Job<T> {
    pub fn is_running(&self) -> bool {
        matches!(self, Job::Running)
    }

    /// The answer, when there is one.
    pub fn done(&self) -> Option<&T> {
        match self {
            Job::Done(value) => Some(value),
            _ => None,
        }
    }

    /// Files an answer: `Done` or `Failed`.
    pub fn finish<E: std::fmt::Display>(result: Result<T, E>) -> Self {
        match result {
            Ok(value) => Job::Done(value),
            Err(e) => Job::Failed(e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Job;

    #[test]
    fn a_job_reads_as_one_state() {
        let running: Job<u8> = Job::Running;
        assert!(running.is_running() && running.done().is_none());
        assert_eq!(Job::finish::<String>(Ok(3)).done(), Some(&3));
        assert_eq!(
            Job::<u8>::finish(Err("no network")),
            Job::Failed("no network".into())
        );
    }
}
