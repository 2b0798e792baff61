//! The model of one register: a value that is absent (`None`, a node that does not exist)
//! or a whole number, with read, write and compare-and-set.

use serde_json::Value;

use crate::history::{Operation, F};

/// The register's value.
pub type State = Option<i64>;

/// One register operation, with the values it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// A read that returned this value.
    Read(State),
    Write(i64),
    Cas {
        expected: i64,
        new: i64,
    },
}

impl Step {
    /// The state after this step, or `None` when the step is impossible in `state` (a read
    /// of another value, a cas whose expectation does not hold).
    pub fn apply(self, state: State) -> Option<State> {
        match self {
            Step::Read(v) => (v == state).then_some(state),
            Step::Write(v) => Some(Some(v)),
            Step::Cas { expected, new } => (state == Some(expected)).then_some(Some(new)),
        }
    }

    /// The step an operation stands for. A read's value is what it returned, so an
    /// indeterminate read carries no information and has no step (`Ok(None)`).
    pub fn of(op: &Operation) -> Result<Option<Step>, String> {
        let bad = |what: &str| Err(format!("{what} in operation {op}"));
        match op.f {
            F::Read => {
                if op.outcome != crate::history::Type::Ok {
                    return Ok(None);
                }
                match &op.value {
                    Value::Null => Ok(Some(Step::Read(None))),
                    v => match v.as_i64() {
                        Some(n) => Ok(Some(Step::Read(Some(n)))),
                        None => bad("a read must return a whole number or null"),
                    },
                }
            }
            F::Write => match op.invoke_value.as_i64() {
                Some(n) => Ok(Some(Step::Write(n))),
                None => bad("a write must carry a whole number"),
            },
            F::Cas => match op.invoke_value.as_array().map(|a| a.as_slice()) {
                Some([e, n]) => match (e.as_i64(), n.as_i64()) {
                    (Some(expected), Some(new)) => Ok(Some(Step::Cas { expected, new })),
                    _ => bad("a cas must carry [expected, new] as whole numbers"),
                },
                _ => bad("a cas must carry [expected, new]"),
            },
            F::Add => bad("'add' is not a register operation (use --workload set)"),
            F::Deliver | F::Ack => bad("'deliver' and 'ack' are not register operations (use --workload changefeed)"),
            F::Submit | F::Claim | F::Run | F::Complete | F::Fail => {
                bad("action-queue operations are not register operations (use --workload actions)")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(Step::Read(None).apply(None), Some(None));
        assert_eq!(Step::Read(Some(1)).apply(None), None);
        assert_eq!(Step::Write(3).apply(Some(1)), Some(Some(3)));
        assert_eq!(Step::Cas { expected: 3, new: 4 }.apply(Some(3)), Some(Some(4)));
        assert_eq!(Step::Cas { expected: 3, new: 4 }.apply(Some(2)), None);
        assert_eq!(Step::Cas { expected: 3, new: 4 }.apply(None), None);
    }
}
