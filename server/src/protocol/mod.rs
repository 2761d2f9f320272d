//! The protocol core (sans I/O): what a message means and what to answer, decided by plain
//! functions over plain data (the `model` types and the codecs' parsed messages). No
//! socket, database or async runtime here: the HTTP handlers load what a decision needs,
//! call it, store what it returns and send the answer, and these modules' tests need
//! neither a database nor a socket.

pub mod delivery;
pub mod digest;
pub mod discovery;
pub mod enrollment;
pub mod management;
pub mod orbit;
pub mod profiles;
pub mod reassembly;
pub mod replay;
