//! The UDP socket set-up shared by the agent and the simulated phone.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Binds a UDP socket with large buffers: a burst of thousands of messages would overflow
/// the default ones before the task gets to read them, and every drop costs a Timer E
/// retransmission (500 ms).
pub fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    bind_with(addr, false)
}

/// Binds an IPv6 socket that carries IPv6 only, beside an IPv4 one.
pub fn bind_v6_only(addr: SocketAddr) -> io::Result<UdpSocket> {
    bind_with(addr, true)
}

fn bind_with(addr: SocketAddr, v6_only: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if v6_only {
        socket.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these (net.core.rmem_max / wmem_max on Linux).
    let _ = socket.set_recv_buffer_size(8 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}
