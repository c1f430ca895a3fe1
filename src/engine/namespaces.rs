//! The store's namespaces: independent ID spaces, each with its own window and in-memory tier,
//! created and dropped while the store is open.

use super::Engine;
use super::space::{Space, namespace_stripes};
use crate::clock::duration_millis;
use crate::error::{Error, Result};
use crate::persist::{OpenedNamespace, check_name};
use crate::settings::{MIN_BUDGET_PER_STRIPE, check_window};
use crate::window::Window;
use parking_lot::RwLock;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// The in-memory budget of a namespace that is not given one: 16 MiB.
pub(crate) const DEFAULT_NAMESPACE_BUDGET: usize = 16 << 20;

/// The open namespaces, by name.
pub(crate) struct Namespaces {
    by_name: RwLock<BTreeMap<String, Arc<Space>>>,
}

/// What a caller asks of a namespace; `None` takes the recorded setting, or for a new namespace
/// the default (the store's window and slots, [`DEFAULT_NAMESPACE_BUDGET`]).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Wanted {
    pub window: Option<Duration>,
    pub slots: Option<u32>,
    pub memory_budget: Option<usize>,
}

impl Namespaces {
    pub(super) fn new(spaces: Vec<Arc<Space>>) -> Self {
        let by_name = spaces
            .into_iter()
            .filter_map(|s| Some((s.name.clone()?, s)))
            .collect();
        Self {
            by_name: RwLock::new(by_name),
        }
    }

    /// Every namespace, in name order.
    pub(crate) fn all(&self) -> Vec<Arc<Space>> {
        self.by_name.read().values().cloned().collect()
    }
}

impl Engine {
    /// Namespace `name`, created with `wanted` if it does not exist.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; [`Error::InvalidConfig`] for a setting out of range or other than
    /// an existing namespace's; an error writing the new namespace's record.
    pub(crate) fn namespace(&self, name: &str, wanted: Wanted) -> Result<Arc<Space>> {
        check_name("namespace", name)?;
        if let Some(space) = self.namespaces.by_name.read().get(name) {
            return matching(space, wanted);
        }
        let mut by_name = self.namespaces.by_name.write();
        if let Some(space) = by_name.get(name) {
            return matching(space, wanted);
        }
        let store = &self.store_space;
        let window = wanted
            .window
            .unwrap_or(Duration::from_millis(store.window.window_ms));
        let slots = wanted.slots.unwrap_or(store.slots);
        let window_ms = check_window(window, slots)?;
        let budget = wanted.memory_budget.unwrap_or(DEFAULT_NAMESPACE_BUDGET);
        if budget < MIN_BUDGET_PER_STRIPE {
            return Err(Error::InvalidConfig {
                what: "memory_budget",
                detail: format!(
                    "{budget} bytes; a namespace needs at least {MIN_BUDGET_PER_STRIPE}"
                ),
            });
        }
        let opened = self.cold.create_namespace(
            name,
            Window::new(window_ms, slots),
            slots,
            budget as u64,
        )?;
        let space = namespace_space(self.stripes, opened)?;
        by_name.insert(name.to_owned(), Arc::clone(&space));
        Ok(space)
    }

    /// Drops namespace `name` with its marks; whether it existed.
    ///
    /// # Errors
    /// [`Error::InvalidName`]; an error deleting its record (which poisons the store, as any
    /// failed write does).
    pub(crate) fn drop_namespace(&self, name: &str) -> Result<bool> {
        check_name("namespace", name)?;
        let mut by_name = self.namespaces.by_name.write();
        let Some(space) = by_name.get(name) else {
            return Ok(false);
        };
        self.cold.drop_namespace(name, &space.generations)?;
        space.set_dropped();
        by_name.remove(name);
        Ok(true)
    }
}

/// The space of a namespace found at open or just created.
pub(super) fn namespace_space(store_stripes: usize, opened: OpenedNamespace) -> Result<Arc<Space>> {
    let budget = usize::try_from(opened.record.memory_budget).unwrap_or(usize::MAX);
    Space::new(
        Some(opened.record.name.clone()),
        opened.record.name.as_bytes(),
        opened.generations,
        opened.record.slots,
        namespace_stripes(store_stripes, budget),
        0,
        budget,
    )
    .map(Arc::new)
}

/// `space`, if `wanted` asks nothing it does not have.
fn matching(space: &Arc<Space>, wanted: Wanted) -> Result<Arc<Space>> {
    let (window, slots) = (space.window, space.slots);
    let differs = |what: &'static str, asked: String, has: String| Error::InvalidConfig {
        what,
        detail: format!(
            "namespace {:?} exists with {what} {has}, not {asked}; a namespace keeps the \
             settings it was created with (drop it to start over)",
            space.name.as_deref().unwrap_or_default()
        ),
    };
    if let Some(asked) = wanted
        .window
        .map(duration_millis)
        .filter(|&w| w != window.window_ms)
    {
        return Err(differs(
            "window",
            format!("{asked} ms"),
            format!("{} ms", window.window_ms),
        ));
    }
    if let Some(asked) = wanted.slots.filter(|&s| s != slots) {
        return Err(differs("slots", asked.to_string(), slots.to_string()));
    }
    if let Some(asked) = wanted
        .memory_budget
        .filter(|&b| b as u64 != space.memory_budget)
    {
        return Err(differs(
            "memory_budget",
            format!("{asked} bytes"),
            format!("{} bytes", space.memory_budget),
        ));
    }
    Ok(Arc::clone(space))
}
