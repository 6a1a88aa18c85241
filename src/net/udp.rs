//! The UDP socket set-up shared by the agent and the simulated phone.

use socket2::{Domain, Protocol, Socket, Type};
use std::io;
use std::net::SocketAddr;
use tokio::net::UdpSocket;

/// Binds a UDP socket with large buffers: a burst of thousands of messages would overflow
/// the default ones before the task gets to read them, and every drop costs a Timer E
/// retransmission (500 ms). An IPv4 socket sends with Don't Fragment set (see
/// [`UNFRAGMENTED_MAX`] and [`send_to`]).
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
    if addr.is_ipv4() {
        // Best effort too: without it the kernel chooses, as for any socket.
        let _ = set_fragmenting(&socket, false);
    }
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

/// The largest datagram sent over IPv4 with Don't Fragment (DF) set; larger ones may be
/// fragmented on the way, as without DF. 1200 bytes fit every path of an IPv6-capable
/// network (1280) with room for tunnels, as QUIC assumes. An unfragmentable datagram needs
/// no IP identification, which the kernel otherwise draws per datagram from a table keyed
/// by the destination: a cache miss per datagram when every phone has its own address.
pub const UNFRAGMENTED_MAX: usize = 1200;

/// Sends one datagram from `socket` (bound by [`bind`]): at once when its buffer has room,
/// else once it has. One larger than [`UNFRAGMENTED_MAX`] may be fragmented on its way.
pub async fn send_to(socket: &UdpSocket, bytes: &[u8], to: SocketAddr) -> io::Result<usize> {
    let now = || {
        fragmentable(socket, bytes.len(), || {
            socket2::SockRef::from(socket).send_to(bytes, &to.into())
        })
    };
    match now() {
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            socket.async_io(tokio::io::Interest::WRITABLE, now).await
        }
        other => other,
    }
}

/// Runs `send`, of a datagram of `len` bytes, with fragmenting allowed when the datagram
/// is larger than [`UNFRAGMENTED_MAX`] on an IPv4 socket, and Don't Fragment set again
/// after it. One lock for the process, so that the settings of two large datagrams never
/// interleave; a small one sent meanwhile by another thread merely goes fragmentable.
pub fn fragmentable<T>(
    socket: &UdpSocket,
    len: usize,
    send: impl FnOnce() -> io::Result<T>,
) -> io::Result<T> {
    static FRAGMENTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
    if len <= UNFRAGMENTED_MAX || !socket.local_addr().is_ok_and(|a| a.is_ipv4()) {
        return send();
    }
    let _one = FRAGMENTING.lock().unwrap_or_else(|e| e.into_inner());
    let socket = socket2::SockRef::from(socket);
    set_fragmenting(&socket, true)?;
    let sent = send();
    // The datagram went (or not) whatever this says: at worst later ones go fragmentable.
    let _ = set_fragmenting(&socket, false);
    sent
}

/// Sets an IPv4 socket's path MTU discovery (IP_MTU_DISCOVER): the kernel's default
/// (`IP_PMTUDISC_WANT`: DF only on datagrams that fit the path MTU it knows, fragmenting
/// the others) when `allowed`, else `IP_PMTUDISC_PROBE` (always DF, never fragmented: a
/// datagram too large for the path is lost and reported by ICMP, as QUIC sends).
#[cfg(target_os = "linux")]
fn set_fragmenting(socket: &Socket, allowed: bool) -> io::Result<()> {
    use nix::libc;
    use std::os::fd::AsRawFd;
    let mode: libc::c_int = if allowed {
        libc::IP_PMTUDISC_WANT
    } else {
        libc::IP_PMTUDISC_PROBE
    };
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the option's value is a c_int that lives across the call, `len` is its size,
    // and the descriptor is the borrowed socket's own. (Neither nix nor socket2 has this
    // option.)
    let set = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            std::ptr::from_ref(&mode).cast(),
            len,
        )
    };
    match set {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

#[cfg(not(target_os = "linux"))]
fn set_fragmenting(_: &Socket, _: bool) -> io::Result<()> {
    Ok(())
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    /// The socket's IP_MTU_DISCOVER mode, as the kernel reports it.
    fn mode(socket: &UdpSocket) -> libc::c_int {
        let mut mode: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `mode` and `len` outlive the call and `len` is `mode`'s size.
        let got = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                std::ptr::from_mut(&mut mode).cast(),
                &mut len,
            )
        };
        assert_eq!(got, 0, "{}", io::Error::last_os_error());
        mode
    }

    #[tokio::test]
    async fn small_datagrams_leave_unfragmentable_and_large_ones_fragmentable() {
        let socket = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let peer = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = peer.local_addr().unwrap();
        assert_eq!(mode(&socket), libc::IP_PMTUDISC_PROBE);
        let during = |len| fragmentable(&socket, len, || Ok(mode(&socket))).unwrap();
        assert_eq!(during(UNFRAGMENTED_MAX), libc::IP_PMTUDISC_PROBE);
        assert_eq!(during(UNFRAGMENTED_MAX + 1), libc::IP_PMTUDISC_WANT);
        assert_eq!(mode(&socket), libc::IP_PMTUDISC_PROBE, "set again after");
        // Both arrive whole.
        let mut buf = vec![0u8; 65536];
        for len in [UNFRAGMENTED_MAX, 20_000] {
            assert_eq!(send_to(&socket, &vec![b'x'; len], to).await.unwrap(), len);
            let (got, _) = peer.recv_from(&mut buf).await.unwrap();
            assert_eq!(got, len);
        }
    }
}
