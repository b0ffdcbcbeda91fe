//! A partition replica's rules as leader and as follower.
