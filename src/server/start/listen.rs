//! The listeners bound (their addresses written beside the data), and the connection budget the
//! open-file limit allows.

use std::net::SocketAddr;
use std::path::Path;

use tracing::{info, warn};

use crate::config::{Checked, Config};
use crate::server::error::{io_error, ServerError};

/// Both listeners, bound, with the addresses they took.
pub(in crate::server) struct Listeners {
    pub(in crate::server) public: tokio::net::TcpListener,
    pub(in crate::server) public_addr: SocketAddr,
    pub(in crate::server) admin: tokio::net::TcpListener,
    pub(in crate::server) admin_addr: SocketAddr,
}

/// Binds the public and the operator listener, writing each bound address to the data directory
/// (`serve.addr`, `admin.addr`).
pub(in crate::server) async fn bind_both(
    checked: &Checked,
    data_dir: &Path,
) -> Result<Listeners, ServerError> {
    let (public, public_addr) = bind(
        checked.server_addr,
        "the handshake listener",
        data_dir,
        "serve.addr",
    )
    .await?;
    let (admin, admin_addr) = bind(
        checked.admin_addr,
        "the operator listener",
        data_dir,
        "admin.addr",
    )
    .await?;
    Ok(Listeners {
        public,
        public_addr,
        admin,
        admin_addr,
    })
}

/// Binds `addr` and writes the bound address (a chosen port when `addr` asked for 0) to
/// `{data_dir}/{file}`.
async fn bind(
    addr: SocketAddr,
    what: &str,
    data_dir: &Path,
    file: &str,
) -> Result<(tokio::net::TcpListener, SocketAddr), ServerError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(io_error(format!("bind {what} {addr}")))?;
    let bound = listener
        .local_addr()
        .map_err(io_error(format!("read the address of {what}")))?;
    write_address(data_dir, file, bound)?;
    Ok((listener, bound))
}

fn write_address(data_dir: &Path, name: &str, addr: SocketAddr) -> Result<(), ServerError> {
    let path = data_dir.join(name);
    std::fs::write(&path, format!("{addr}\n"))
        .map_err(io_error(format!("write {}", path.display())))
}

/// File descriptors kept for everything but the public listener's connections: the log's files,
/// the key, the operator listener's connections, the runtime's own.
const RESERVED_DESCRIPTORS: u64 = 64;

/// Raises the soft limit on open files to the hard one (logging the result), and returns how many
/// connections the public listener may hold: `server.max_connections`, or fewer when the limit
/// leaves no room for them beside the operator listener and the log, so that a flood of clients
/// can never take the descriptors the operator API and the log need.
pub(in crate::server) fn connection_budget(config: &Config) -> u32 {
    let wanted = u64::from(config.server.max_connections);
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct they are given.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0;
    if !known {
        warn!("the open-file limit could not be read; serving up to server.max_connections");
        return config.server.max_connections;
    }
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max,
            rlim_max: limit.rlim_max,
        };
        // SAFETY: as above.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            info!(
                from = limit.rlim_cur,
                to = limit.rlim_max,
                "raised the open-file limit"
            );
            limit = raised;
        } else {
            warn!(
                soft = limit.rlim_cur,
                hard = limit.rlim_max,
                "the open-file limit could not be raised"
            );
        }
    }
    let room = limit
        .rlim_cur
        .saturating_sub(RESERVED_DESCRIPTORS + u64::from(config.admin.max_connections))
        .max(1);
    if room < wanted {
        warn!(
            open_file_limit = limit.rlim_cur,
            max_connections = room,
            "server.max_connections is more than the open-file limit leaves room for: serving fewer"
        );
    }
    u32::try_from(room.min(wanted)).unwrap_or(config.server.max_connections)
}
