//! A worker thread that owns some state (a cache over /proc, a cgroup walker) and answers
//! questions about it, each waited for at most a set patience. What it reads is the workloads'
//! (their files, their cgroup tree): one on a file system that never answers (FUSE, a dead NFS
//! server), or a tree too large to walk quickly, must cost that one question, never the capture
//! thread that asks. While the worker is stuck, later questions are not waited for at all.
//! Unanswered questions are counted.

use std::sync::mpsc;
use std::time::Duration;

type Question<S> = Box<dyn FnOnce(&mut S) + Send>;

pub struct Patient<S> {
    questions: mpsc::SyncSender<Question<S>>,
    patience: Duration,
    timeouts: u64,
}

impl<S: Send + 'static> Patient<S> {
    /// Moves `state` to a thread named `name`. The thread ends when the `Patient` is dropped.
    pub fn new(name: &str, mut state: S, patience: Duration) -> Self {
        // One question waits while one is asked: a stuck thread stops the queue at once.
        let (questions, asked) = mpsc::sync_channel::<Question<S>>(1);
        let spawned = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                for question in asked {
                    question(&mut state);
                }
            });
        // Without the thread every question goes unanswered, which askers handle.
        drop(spawned);
        Patient {
            questions,
            patience,
            timeouts: 0,
        }
    }

    /// `question` run on the worker, if it answers within the patience.
    pub fn ask<T: Send + 'static>(
        &mut self,
        question: impl FnOnce(&mut S) -> T + Send + 'static,
    ) -> Option<T> {
        let (answer, answered) = mpsc::channel();
        let question: Question<S> = Box::new(move |state| {
            // The asker may have given up: its answer then goes nowhere.
            let _ = answer.send(question(state));
        });
        let answer = match self.questions.try_send(question) {
            Ok(()) => answered.recv_timeout(self.patience).ok(),
            Err(_) => None,
        };
        self.timeouts += u64::from(answer.is_none());
        answer
    }

    /// Questions not answered in time.
    pub fn timeouts(&self) -> u64 {
        self.timeouts
    }
}

impl<S> std::fmt::Debug for Patient<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Patient")
            .field("patience", &self.patience)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// A worker that hangs costs one wait of the patience, then nothing while it hangs; answers
    /// come again once it is done.
    #[test]
    fn a_hanging_worker_costs_one_wait_not_the_asker() {
        let mut worker = Patient::new("dnslens-test", (), Duration::from_millis(50));
        let hangs = |n: u32| {
            move |_: &mut ()| {
                if n == 1 {
                    std::thread::sleep(Duration::from_secs(2));
                }
                n
            }
        };
        assert_eq!(worker.ask(hangs(7)), Some(7), "answered in time");
        let asked = Instant::now();
        assert_eq!(worker.ask(hangs(1)), None, "given up after the patience");
        for n in 2..10 {
            assert_eq!(worker.ask(hangs(n)), None, "the worker hangs");
        }
        assert!(
            asked.elapsed() < Duration::from_secs(1),
            "{:?}",
            asked.elapsed()
        );
        assert_eq!(worker.timeouts(), 9);
        std::thread::sleep(Duration::from_millis(2_500));
        assert_eq!(worker.ask(hangs(3)), Some(3), "answers again");
    }
}
