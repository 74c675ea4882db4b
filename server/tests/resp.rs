//! The RESP codec's behaviour through its public API: every frame type on
//! the wire in both versions, RESP2 degradation, pipelines cut anywhere,
//! inline requests, and hostile input.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "tests fail loudly on any error"
)]

use cairn_server::resp::{
    Args, CommandDecoder, Decoder, Frame, Limits, ProtocolError, RespVersion, decode,
    decode_command,
};

fn encode(frame: &Frame, version: RespVersion) -> Vec<u8> {
    let mut out = Vec::new();
    frame.encode(&mut out, version);
    out
}

fn decode_all(bytes: &[u8]) -> Frame {
    let (frame, used) = decode(bytes, &Limits::default()).unwrap().unwrap();
    assert_eq!(used, bytes.len(), "a frame must use all of its own bytes");
    frame
}

fn frame_error(bytes: &[u8]) -> ProtocolError {
    decode(bytes, &Limits::default()).unwrap_err()
}

fn command_error(bytes: &[u8]) -> ProtocolError {
    decode_command(bytes, &Limits::default()).unwrap_err()
}

fn args(list: &[&str]) -> Args {
    list.iter().map(|a| a.as_bytes().to_vec()).collect()
}

fn multibulk(list: &[&str]) -> Vec<u8> {
    let frame = Frame::Array(
        list.iter()
            .map(|a| Frame::Bulk(a.as_bytes().into()))
            .collect(),
    );
    encode(&frame, RespVersion::Resp2)
}

/// Decodes every whole request at the front of `buf`, then asserts that
/// what is left is an incomplete request (`None`), never an error.
fn commands_in(buf: &[u8]) -> Vec<Args> {
    let mut commands = Vec::new();
    let mut rest = buf;
    while let Some((args, used)) = decode_command(rest, &Limits::default()).unwrap() {
        commands.push(args);
        rest = &rest[used..];
    }
    commands
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(s.as_bytes().to_vec())
}

fn every_resp3_frame() -> Vec<Frame> {
    vec![
        Frame::Simple(b"OK".to_vec()),
        Frame::Simple(Vec::new()),
        Frame::Error(b"ERR unknown command".to_vec()),
        Frame::Integer(0),
        Frame::Integer(i64::MIN),
        Frame::Integer(i64::MAX),
        bulk("binary \r\n\0 safe"),
        bulk(""),
        Frame::Array(vec![bulk("a"), Frame::Integer(1), Frame::Array(vec![])]),
        Frame::Array(Vec::new()),
        Frame::Null,
        Frame::Boolean(true),
        Frame::Boolean(false),
        Frame::Double(3.25),
        Frame::Double(-0.1),
        Frame::Double(1e300),
        Frame::Double(5e-324),
        Frame::Double(f64::INFINITY),
        Frame::Double(f64::NEG_INFINITY),
        Frame::BigNumber(b"-3492890328409238509324850943850943825024385".to_vec()),
        Frame::BulkError(b"SYNTAX invalid\r\nsyntax".to_vec()),
        Frame::Verbatim {
            format: *b"txt",
            text: b"Some string".to_vec(),
        },
        Frame::Map(vec![
            (bulk("first"), Frame::Integer(1)),
            (bulk("second"), Frame::Null),
        ]),
        Frame::Set(vec![bulk("a"), Frame::Boolean(false)]),
        Frame::Attribute {
            attributes: vec![(bulk("ttl"), Frame::Integer(3600))],
            data: Box::new(Frame::Array(vec![bulk("value")])),
        },
        Frame::Push(vec![bulk("message"), bulk("chan"), bulk("hi")]),
    ]
}

fn every_resp2_frame() -> Vec<Frame> {
    vec![
        Frame::Simple(b"PONG".to_vec()),
        Frame::Error(b"WRONGTYPE Operation against a key".to_vec()),
        Frame::Integer(-7),
        bulk("value"),
        Frame::NullBulk,
        Frame::Array(vec![bulk("a"), Frame::NullBulk, Frame::NullArray]),
        Frame::NullArray,
    ]
}

// Pins that every frame type decodes back to itself when sent in RESP3.
#[test]
fn every_frame_type_roundtrips_in_resp3() {
    for frame in every_resp3_frame() {
        assert_eq!(decode_all(&encode(&frame, RespVersion::Resp3)), frame);
    }
}

// Pins that RESP2's types, nulls included, decode back to themselves.
#[test]
fn resp2_frames_roundtrip_in_resp2() {
    for frame in every_resp2_frame() {
        assert_eq!(decode_all(&encode(&frame, RespVersion::Resp2)), frame);
    }
}

// Pins the exact RESP3 bytes for each type, so the wire form cannot drift.
#[test]
fn resp3_wire_form_is_exact() {
    let cases: Vec<(Frame, &[u8])> = vec![
        (Frame::Null, b"_\r\n"),
        (Frame::NullBulk, b"_\r\n"),
        (Frame::NullArray, b"_\r\n"),
        (Frame::Boolean(true), b"#t\r\n"),
        (Frame::Double(1.5), b",1.5\r\n"),
        (Frame::Double(f64::NAN), b",nan\r\n"),
        (Frame::BigNumber(b"123".to_vec()), b"(123\r\n"),
        (Frame::BulkError(b"ERR x".to_vec()), b"!5\r\nERR x\r\n"),
        (
            Frame::Verbatim {
                format: *b"txt",
                text: b"text".to_vec(),
            },
            b"=8\r\ntxt:text\r\n",
        ),
        (
            Frame::Map(vec![(bulk("a"), Frame::Integer(1))]),
            b"%1\r\n$1\r\na\r\n:1\r\n",
        ),
        (Frame::Set(vec![Frame::Integer(1)]), b"~1\r\n:1\r\n"),
        (Frame::Push(vec![Frame::Integer(1)]), b">1\r\n:1\r\n"),
        (
            Frame::Attribute {
                attributes: vec![(bulk("k"), bulk("v"))],
                data: Box::new(Frame::Integer(2)),
            },
            b"|1\r\n$1\r\nk\r\n$1\r\nv\r\n:2\r\n",
        ),
    ];
    for (frame, wire) in cases {
        assert_eq!(encode(&frame, RespVersion::Resp3), wire, "{frame:?}");
    }
}

// Pins how RESP3-only types reach a RESP2 client: as Redis sends them.
#[test]
fn resp3_types_degrade_for_resp2_clients_like_redis() {
    let cases: Vec<(Frame, &[u8])> = vec![
        (Frame::Null, b"$-1\r\n"),
        (Frame::NullArray, b"*-1\r\n"),
        (Frame::Boolean(true), b":1\r\n"),
        (Frame::Boolean(false), b":0\r\n"),
        (Frame::Double(1.5), b"$3\r\n1.5\r\n"),
        (Frame::Double(f64::NEG_INFINITY), b"$4\r\n-inf\r\n"),
        (Frame::BigNumber(b"123".to_vec()), b"$3\r\n123\r\n"),
        (Frame::BulkError(b"ERR a\r\nb".to_vec()), b"-ERR a  b\r\n"),
        (
            Frame::Verbatim {
                format: *b"txt",
                text: b"text".to_vec(),
            },
            b"$4\r\ntext\r\n",
        ),
        (
            Frame::Map(vec![(bulk("a"), Frame::Boolean(true))]),
            b"*2\r\n$1\r\na\r\n:1\r\n",
        ),
        (Frame::Set(vec![Frame::Null]), b"*1\r\n$-1\r\n"),
        (Frame::Push(vec![bulk("m")]), b"*1\r\n$1\r\nm\r\n"),
        (
            Frame::Attribute {
                attributes: vec![(bulk("k"), bulk("v"))],
                data: Box::new(Frame::Integer(2)),
            },
            b":2\r\n",
        ),
    ];
    for (frame, wire) in cases {
        assert_eq!(encode(&frame, RespVersion::Resp2), wire, "{frame:?}");
    }
}

// Pins that no payload can inject a frame through a line type: CR and LF
// in simple strings and errors are sent as spaces.
#[test]
fn line_payloads_cannot_inject_crlf() {
    let frame = Frame::Simple(b"OK\r\n+INJECTED".to_vec());
    assert_eq!(encode(&frame, RespVersion::Resp2), b"+OK  +INJECTED\r\n");
    let frame = Frame::Error(b"ERR a\nb".to_vec());
    assert_eq!(encode(&frame, RespVersion::Resp3), b"-ERR a b\r\n");
}

// Pins the decoder's view of both nulls: `$-1` and `*-1` keep their RESP2
// identity whatever the version, `_` is RESP3's null.
#[test]
fn nulls_decode_to_their_own_variants() {
    assert_eq!(decode_all(b"$-1\r\n"), Frame::NullBulk);
    assert_eq!(decode_all(b"*-1\r\n"), Frame::NullArray);
    assert_eq!(decode_all(b"_\r\n"), Frame::Null);
}

fn pipeline() -> (Vec<u8>, Vec<Args>) {
    let mut buf = Vec::new();
    let mut expected = Vec::new();
    let requests: [&[&str]; 4] = [
        &["SET", "key", "a\r\nbinary\0value"],
        &["GET", "key"],
        &["MSET", "a", "", "b", "2"],
        &["PING"],
    ];
    for request in requests {
        buf.extend(multibulk(request));
        expected.push(args(request));
    }
    buf.extend_from_slice(b"SET k \"v w\"\r\n");
    expected.push(args(&["SET", "k", "v w"]));
    buf.extend_from_slice(b"PING\n");
    expected.push(args(&["PING"]));
    buf.extend(multibulk(&["DEL", "k"]));
    expected.push(args(&["DEL", "k"]));
    (buf, expected)
}

// Pins that a pipeline of multibulk and inline requests decodes, request by
// request, to the commands that were sent.
#[test]
fn pipeline_decodes_to_the_commands_sent() {
    let (buf, expected) = pipeline();
    assert_eq!(commands_in(&buf), expected);
}

// Pins that a pipeline cut at any byte yields the whole requests before the
// cut and then "need more", never an error or a wrong request.
#[test]
fn every_prefix_of_a_pipeline_needs_more_and_never_errors() {
    let (buf, expected) = pipeline();
    for cut in 0..buf.len() {
        let got = commands_in(&buf[..cut]);
        assert!(got.len() < expected.len(), "cut {cut}");
        assert_eq!(got, expected[..got.len()], "cut {cut}");
    }
}

// Pins the same for frames: every prefix of a stream of every frame type
// decodes only whole frames, then needs more.
#[test]
fn every_prefix_of_a_frame_stream_needs_more_and_never_errors() {
    let frames = every_resp3_frame();
    let mut buf = Vec::new();
    for frame in &frames {
        frame.encode(&mut buf, RespVersion::Resp3);
    }
    for cut in 0..buf.len() {
        let mut rest = &buf[..cut];
        let mut seen = 0;
        while let Some((frame, used)) = decode(rest, &Limits::default()).unwrap() {
            assert_eq!(frame, frames[seen], "cut {cut}");
            seen += 1;
            rest = &rest[used..];
        }
        assert!(seen < frames.len());
    }
}

// Pins the resumable decoders: fed one byte at a time, they produce what a
// single call on the whole buffer produces.
#[test]
fn decoders_fed_a_byte_at_a_time_match_one_shot() {
    let (buf, expected) = pipeline();
    let mut decoder = CommandDecoder::new(Limits::default());
    let mut pending: Vec<u8> = Vec::new();
    let mut got = Vec::new();
    for &byte in &buf {
        pending.push(byte);
        if let Some((args, used)) = decoder.decode(&pending).unwrap() {
            got.push(args);
            pending.drain(..used);
        }
    }
    assert_eq!(got, expected);
    assert!(pending.is_empty());

    let frames = every_resp3_frame();
    let mut buf = Vec::new();
    for frame in &frames {
        frame.encode(&mut buf, RespVersion::Resp3);
    }
    let mut decoder = Decoder::new(Limits::default());
    let mut got = Vec::new();
    for &byte in &buf {
        pending.push(byte);
        if let Some((frame, used)) = decoder.decode(&pending).unwrap() {
            got.push(frame);
            pending.drain(..used);
        }
    }
    assert_eq!(got, frames);
}

// Pins that the resumable decoders never read again what they have parsed:
// bytes already parsed are overwritten between calls (breaking the
// REQUIRES on purpose) and the result still holds what was first there.
// This is what makes a request arriving in pieces cost linear time.
#[test]
fn decoders_do_not_reread_parsed_bytes() {
    let mut buf = multibulk(&["SET", "key", "value"]);
    let mut decoder = CommandDecoder::new(Limits::default());
    let split = buf.len() - 3;
    assert_eq!(decoder.decode(&buf[..split]).unwrap(), None);
    buf[..split - 8].fill(b'!');
    let (got, used) = decoder.decode(&buf).unwrap().unwrap();
    assert_eq!((got, used), (args(&["SET", "key", "value"]), buf.len()));

    let frame = Frame::Array(vec![Frame::Map(vec![(bulk("k"), bulk("v"))]), bulk("tail")]);
    let mut buf = encode(&frame, RespVersion::Resp3);
    let mut decoder = Decoder::new(Limits::default());
    let split = buf.len() - 3;
    assert_eq!(decoder.decode(&buf[..split]).unwrap(), None);
    buf[..split - 10].fill(b'!');
    assert_eq!(decoder.decode(&buf).unwrap(), Some((frame, buf.len())));
}

// Pins a large request arriving in small reads (100k arguments in 64-byte
// pieces) decoding whole. Were each read to re-parse the request, this would
// be ~10^10 byte visits (minutes); resumed, it takes milliseconds.
#[test]
fn large_request_arriving_in_pieces_decodes_whole() {
    let many: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let buf = multibulk(&many);
    let mut decoder = CommandDecoder::new(Limits::default());
    let mut result = None;
    for end in (64..buf.len() + 64).step_by(64) {
        result = decoder.decode(&buf[..end.min(buf.len())]).unwrap();
        if result.is_some() {
            break;
        }
    }
    let (got, used) = result.unwrap();
    assert_eq!((got.len(), used), (many.len(), buf.len()));

    let frame = Frame::Array(many.iter().map(|a| bulk(a)).collect());
    let buf = encode(&frame, RespVersion::Resp3);
    let mut decoder = Decoder::new(Limits::default());
    let mut result = None;
    for end in (64..buf.len() + 64).step_by(64) {
        result = decoder.decode(&buf[..end.min(buf.len())]).unwrap();
        if result.is_some() {
            break;
        }
    }
    assert_eq!(result.unwrap().0, frame);
}

// Pins a large bulk arriving in pieces: 8 MiB in 4 KiB reads is returned
// at the read that completes it, not before and not later. (Each earlier
// read costs a look at the bulk's header only, not at its body.)
#[test]
fn large_bulk_arriving_in_pieces_completes_on_its_last_read() {
    let value = vec![b'x'; 8 << 20];
    let frame = Frame::Array(vec![bulk("SET"), bulk("k"), Frame::Bulk(value.clone())]);
    let buf = encode(&frame, RespVersion::Resp2);
    let mut decoder = CommandDecoder::new(Limits::default());
    let mut reads = 0;
    for end in (4096..buf.len() + 4096).step_by(4096) {
        reads += 1;
        if let Some((args, _)) = decoder.decode(&buf[..end.min(buf.len())]).unwrap() {
            assert_eq!(args[2], value);
            break;
        }
    }
    assert_eq!(reads, buf.len().div_ceil(4096));
}

// Pins inline requests as Redis's sdssplitargs reads them: blanks split,
// double quotes take escapes, single quotes only \', LF or CRLF ends a line.
#[test]
fn inline_requests_split_like_redis() {
    let cases: [(&[u8], &[&str]); 7] = [
        (b"PING\r\n", &["PING"]),
        (b"SET a b\n", &["SET", "a", "b"]),
        (b"  SET   a\tb  \r\n", &["SET", "a", "b"]),
        (b"SET k \"a\\x41\"\r\n", &["SET", "k", "aA"]),
        (
            b"SET k \"line\\nbreak \\\"q\\\"\"\r\n",
            &["SET", "k", "line\nbreak \"q\""],
        ),
        (b"SET k 'it\\'s'\r\n", &["SET", "k", "it's"]),
        (b"SET k 'no\\nescape'\r\n", &["SET", "k", "no\\nescape"]),
    ];
    for (line, expected) in cases {
        let (got, used) = decode_command(line, &Limits::default()).unwrap().unwrap();
        assert_eq!(got, args(expected), "{:?}", String::from_utf8_lossy(line));
        assert_eq!(used, line.len());
    }
}

// Pins the quote errors Redis reports as "unbalanced quotes", `'it''s'`
// among them (a closing quote must end the argument).
#[test]
fn inline_unbalanced_quotes_are_an_error() {
    for line in [
        &b"SET k \"open\r\n"[..],
        b"SET k 'open\r\n",
        b"SET k 'it''s'\r\n",
        b"SET k \"a\"b\r\n",
    ] {
        let err = command_error(line);
        assert!(
            matches!(err, ProtocolError::UnbalancedQuotes { .. }),
            "{err:?}"
        );
        assert_eq!(
            err.to_redis_error(),
            "ERR Protocol error: unbalanced quotes in request"
        );
    }
}

// Pins Redis's empty requests: `*0`, `*-1` and blank inline lines decode to
// no arguments and consume their bytes, so the server can skip them.
#[test]
fn empty_requests_decode_to_no_arguments() {
    for buf in [&b"*0\r\n"[..], b"*-1\r\n", b"\r\n", b"   \n"] {
        assert_eq!(
            decode_command(buf, &Limits::default()).unwrap(),
            Some((Vec::new(), buf.len()))
        );
    }
}

// Pins Redis's rule that only `*` starts a multibulk: any other first byte,
// RESP type bytes included, starts an inline request.
#[test]
fn requests_not_starting_with_star_are_inline() {
    let (got, _) = decode_command(b"+PING\r\n", &Limits::default())
        .unwrap()
        .unwrap();
    assert_eq!(got, args(&["+PING"]));
}

// Pins that a request's multibulk may hold only bulk strings, with Redis's
// wording for anything else.
#[test]
fn request_elements_must_be_bulk_strings() {
    let err = command_error(b"*2\r\n$3\r\nGET\r\n:1\r\n");
    assert_eq!(
        err,
        ProtocolError::UnexpectedType {
            offset: 13,
            expected: b'$',
            got: b':'
        }
    );
    assert_eq!(
        err.to_redis_error(),
        "ERR Protocol error: expected '$', got ':'"
    );
    assert_eq!(
        command_error(b"*1\r\n\x01").to_redis_error(),
        "ERR Protocol error: expected '$', got '\\x01'"
    );
}

// Pins hostile and malformed lengths: each is an error with Redis's wording,
// found from the header alone (no allocation, no waiting for the body).
#[test]
fn hostile_lengths_are_errors_with_redis_wording() {
    let multibulk = "ERR Protocol error: invalid multibulk length";
    let bulk = "ERR Protocol error: invalid bulk length";
    let frame_cases: [(&[u8], &str); 10] = [
        (b"$-2\r\n", bulk),
        (b"$99999999999999\r\n", bulk),
        (b"$99999999999999999999999\r\n", bulk),
        (b"$abc\r\n", bulk),
        (b"$ 1\r\n", bulk),
        (b"*-5\r\n", multibulk),
        (b"*3000000000\r\n", multibulk),
        (b"*1x\r\n", multibulk),
        (b"%-1\r\n", multibulk),
        (b"~9223372036854775807\r\n", multibulk),
    ];
    for (buf, text) in frame_cases {
        assert_eq!(frame_error(buf).to_redis_error(), text, "{buf:?}");
    }
    let command_cases: [(&[u8], &str); 6] = [
        (b"*-5\r\n", multibulk),
        (b"*3000000000\r\n", multibulk),
        (b"*+1\r\n", multibulk),
        (b"*1\r\n$-1\r\n", bulk),
        (b"*1\r\n$-2\r\n", bulk),
        (b"*1\r\n$99999999999999\r\n", bulk),
    ];
    for (buf, text) in command_cases {
        assert_eq!(command_error(buf).to_redis_error(), text, "{buf:?}");
    }
}

// Pins that configured limits bind exactly: one over is an error naming the
// length and the limit, at the limit is fine.
#[test]
fn lengths_beyond_configured_limits_are_errors() {
    let limits = Limits {
        max_bulk_bytes: 4,
        max_array_len: 2,
        ..Limits::default()
    };
    assert!(decode(b"$4\r\nabcd\r\n", &limits).unwrap().is_some());
    assert_eq!(
        decode(b"$5\r\n", &limits),
        Err(ProtocolError::BulkTooLong {
            offset: 1,
            len: 5,
            max_bytes: 4
        })
    );
    assert!(decode(b"*2\r\n:1\r\n:2\r\n", &limits).unwrap().is_some());
    assert_eq!(
        decode(b"*3\r\n", &limits),
        Err(ProtocolError::MultibulkTooLong {
            offset: 1,
            len: 3,
            max: 2
        })
    );
    assert!(matches!(
        decode_command(b"*3\r\n", &limits),
        Err(ProtocolError::MultibulkTooLong { len: 3, .. })
    ));
    assert!(matches!(
        decode_command(b"*1\r\n$5\r\n", &limits),
        Err(ProtocolError::BulkTooLong { len: 5, .. })
    ));
}

// Pins that a line or inline request without its terminator is an error once
// it passes max_inline_bytes, so a peer cannot grow our buffer forever.
#[test]
fn unterminated_lines_beyond_the_limit_are_errors() {
    let limits = Limits {
        max_inline_bytes: 8,
        ..Limits::default()
    };
    assert_eq!(decode_command(b"PINGPING", &limits), Ok(None));
    assert_eq!(
        decode_command(b"PINGPINGX", &limits)
            .unwrap_err()
            .to_redis_error(),
        "ERR Protocol error: too big inline request"
    );
    assert_eq!(
        decode_command(b"*000000000", &limits)
            .unwrap_err()
            .to_redis_error(),
        "ERR Protocol error: too big mbulk count string"
    );
    assert_eq!(
        decode_command(b"*1\r\n$000000000", &limits)
            .unwrap_err()
            .to_redis_error(),
        "ERR Protocol error: too big bulk count string"
    );
    assert!(matches!(
        decode(b"+123456789", &limits),
        Err(ProtocolError::LineTooLong { .. })
    ));
}

// Pins that CR must be followed by LF, lines hold no bare LF, and bulk data
// is followed by CRLF (Redis skips those two bytes unchecked; we do not).
#[test]
fn missing_crlf_is_an_error() {
    for (buf, offset) in [
        (&b"+OK\rX"[..], 4),
        (b"+O\nK\r\n", 2),
        (b"$3\r\nfooXY", 7),
        (b"$3\r\nfoo\rY", 8),
    ] {
        assert_eq!(frame_error(buf), ProtocolError::MissingCrlf { offset });
    }
    assert_eq!(
        command_error(b"*1\r\n$3\r\nGETxx"),
        ProtocolError::MissingCrlf { offset: 11 }
    );
}

// Pins the depth bound: max_depth nested arrays decode, one more is an
// error, so a decoded frame never recurses deeper than the limit.
#[test]
fn nesting_beyond_max_depth_is_an_error() {
    let limits = Limits::default();
    let nested = |depth: usize| {
        let mut buf = b"*1\r\n".repeat(depth);
        buf.extend_from_slice(b":1\r\n");
        buf
    };
    assert!(
        decode(&nested(limits.max_depth), &limits)
            .unwrap()
            .is_some()
    );
    assert_eq!(
        decode(&nested(limits.max_depth + 1), &limits),
        Err(ProtocolError::TooDeep {
            offset: 4 * limits.max_depth,
            max_depth: limits.max_depth
        })
    );
    let attributes = b"|1\r\n:1\r\n:1\r\n".repeat(limits.max_depth + 1);
    assert!(matches!(
        decode(&attributes, &limits),
        Err(ProtocolError::TooDeep { .. })
    ));
}

// Pins RESP3 scalar validation: bodies a type does not allow are errors.
#[test]
fn malformed_resp3_scalars_are_errors() {
    for buf in [
        &b"_x\r\n"[..],
        b"#x\r\n",
        b"#true\r\n",
        b",1.5x\r\n",
        b",\r\n",
        b"(12a\r\n",
        b"(-\r\n",
        b"=3\r\ntxt\r\n",
        b"=5\r\ntxt!a\r\n",
        b":1.5\r\n",
        b":-0\r\n",
        b"!-1\r\n",
        b"?\r\n",
    ] {
        assert!(decode(buf, &Limits::default()).is_err(), "{buf:?}");
    }
    assert_eq!(
        frame_error(b"?1\r\n").to_redis_error(),
        "ERR Protocol error: invalid type byte '?'"
    );
}

// Pins that a NaN double survives the round trip as NaN (NaN != NaN, so the
// roundtrip tests cannot check it).
#[test]
fn nan_double_decodes_as_nan() {
    match decode_all(b",nan\r\n") {
        Frame::Double(d) => assert!(d.is_nan()),
        other => panic!("{other:?}"),
    }
}
