//! Governance: the registry, grants, the policy in force and approvals,
//! as projections replayed from the ledger, and the decision they make for
//! each call.
//!
//! - `state`: the projection (`GovState`), one fold of the parts below.
//! - `registry`, `grants`, `approvals`, `suspensions`: each part's fold.
//! - `policy`: the policy language (parse, evaluate).
//! - `decide`: the decision for one call, a pure function of the state.
//! - `egress`: the hosts a call names, held to its rule's
//!   `network_allowlist`.
//! - `service`: the live state of a running gateway and the mutations
//!   (checked, then appended as events).
//! - `limits`: counting calls against the policy's rate limits and quotas.
//! - `call`: who is calling and what they ask for.

pub mod approvals;
mod call;
mod decide;
pub mod egress;
pub mod grants;
pub mod limits;
pub mod policy;
pub mod registry;
mod service;
pub mod state;
pub mod suspensions;
mod times;

pub use call::{AuthMethod, CallRequest, Principal, Verdict};
pub use decide::{Gate, Ruling, ToolFacts, decide, decide_access, tool_facts};
pub use registry::Status;
pub use service::{ApprovalSpec, GovError, Governance, GrantSpec, Revealer, ServerSpec, View, resolve_as_of};
pub use state::{GovState, render};
