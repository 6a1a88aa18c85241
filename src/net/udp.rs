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

/// Asks the kernel to queue the ICMP errors that come back for this socket's datagrams
/// (IP_RECVERR, IPV6_RECVERR), so that a closed port is known at once instead of at
/// Timer F. Best effort: elsewhere than on Linux the timers decide.
pub(crate) fn report_unreachable(socket: &UdpSocket) {
    #[cfg(target_os = "linux")]
    {
        use nix::sys::socket::{setsockopt, sockopt};
        let _ = match socket.local_addr() {
            Ok(addr) if addr.is_ipv6() => setsockopt(socket, sockopt::Ipv6RecvErr, &true),
            _ => setsockopt(socket, sockopt::Ipv4RecvErr, &true),
        };
    }
}

/// An ICMP error queued for one of a socket's datagrams: the datagram's bytes and what
/// the error says.
pub(crate) struct Unreachable {
    pub request: Vec<u8>,
    pub reason: String,
}

/// Takes the next ICMP error queued on `socket`, if any (see [`report_unreachable`]).
#[cfg(target_os = "linux")]
pub(crate) fn next_unreachable(socket: &UdpSocket, buf: &mut [u8]) -> Option<Unreachable> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, SockaddrStorage};
    use std::os::fd::AsRawFd;
    let mut cmsg = nix::cmsg_space!(nix::libc::sock_extended_err, nix::libc::sockaddr_in6);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_ERRQUEUE | MsgFlags::MSG_DONTWAIT,
    )
    .ok()?;
    let to = msg.address.map(|a| a.to_string()).unwrap_or_default();
    let reason = msg.cmsgs().ok()?.find_map(|c| match c {
        ControlMessageOwned::Ipv4RecvErr(e, _) | ControlMessageOwned::Ipv6RecvErr(e, _) => {
            Some(icmp_reason(&e, &to))
        }
        _ => None,
    })?;
    let n = msg.bytes;
    Some(Unreachable {
        request: buf[..n].to_vec(),
        reason,
    })
}

#[cfg(target_os = "linux")]
fn icmp_reason(e: &nix::libc::sock_extended_err, to: &str) -> String {
    use nix::libc::{SO_EE_ORIGIN_ICMP, SO_EE_ORIGIN_ICMP6};
    // ICMP destination unreachable 3/3 and ICMPv6 1/4: the port is closed.
    let port = matches!(
        (e.ee_origin, e.ee_type, e.ee_code),
        (SO_EE_ORIGIN_ICMP, 3, 3) | (SO_EE_ORIGIN_ICMP6, 1, 4)
    );
    if port {
        format!("port unreachable from {to}: nothing listens there")
    } else {
        format!(
            "{to} is unreachable: {}",
            std::io::Error::from_raw_os_error(e.ee_errno as i32)
        )
    }
}

#[cfg(not(target_os = "linux"))]
pub(crate) fn next_unreachable(_: &UdpSocket, _: &mut [u8]) -> Option<Unreachable> {
    None
}
