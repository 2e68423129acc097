//! The interactive phone: `termphone` with no subcommand. The Elm architecture: a
//! [`model::Model`] holds what the screen shows, [`update::update`] turns messages (keys,
//! engine events, ticks, database results) into a new model and [`update::Effect`]s, and
//! [`view::view`] draws the model. Only [`run`] does I/O: the terminal, the engine (through
//! [`crate::engine::api`] only), the history database and the control socket.

pub mod keymap;
pub mod model;
pub mod run;
pub mod terminal;
pub mod update;
pub mod view;
