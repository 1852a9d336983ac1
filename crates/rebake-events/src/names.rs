use crate::{EventsError, ImageName, Result};

/// The work queues: work-queue-retention streams with one durable pull consumer each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Queue {
    /// Build requests, keyed per image (a newer request replaces one not yet started).
    Build,
    /// Staged images waiting for the scanner.
    Scan,
    /// Scanned images waiting for the signer/publisher.
    Sign,
}

impl Queue {
    /// Every queue.
    pub const ALL: [Queue; 3] = [Queue::Build, Queue::Scan, Queue::Sign];

    fn token(self) -> &'static str {
        match self {
            Queue::Build => "build",
            Queue::Scan => "scan",
            Queue::Sign => "sign",
        }
    }

    fn stream_suffix(self) -> &'static str {
        match self {
            Queue::Build => "BUILD",
            Queue::Scan => "SCAN",
            Queue::Sign => "SIGN",
        }
    }
}

/// The KV buckets that hold Rebake's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bucket {
    /// Image specs as loaded (key: image).
    Catalog,
    /// What an image was built from (key: image): base digest, commits, inputs hash.
    Lineage,
    /// Current state per image (key: image): published digest and hash, pending build, status.
    Images,
    /// Build records (key: build id).
    Builds,
    /// What Rebake knows of upstream state (key: encoded tag or branch).
    Upstream,
    /// Webhook delivery ids already accepted (key: source and hashed id), so a replayed
    /// delivery is a no-op; entries expire after 30 days.
    Deliveries,
}

impl Bucket {
    /// Every bucket.
    pub const ALL: [Bucket; 6] = [
        Bucket::Catalog,
        Bucket::Lineage,
        Bucket::Images,
        Bucket::Builds,
        Bucket::Upstream,
        Bucket::Deliveries,
    ];

    fn token(self) -> &'static str {
        match self {
            Bucket::Catalog => "catalog",
            Bucket::Lineage => "lineage",
            Bucket::Images => "images",
            Bucket::Builds => "builds",
            Bucket::Upstream => "upstream",
            Bucket::Deliveries => "deliveries",
        }
    }
}

/// Every name on the bus, derived from one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    /// Validates `prefix` (`[a-z0-9_-]`, starting with a letter, at most 32 characters).
    pub fn new(prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        let valid = !prefix.is_empty()
            && prefix.len() <= 32
            && prefix.as_bytes()[0].is_ascii_lowercase()
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !valid {
            return Err(EventsError::InvalidPrefix { prefix });
        }
        Ok(Self { prefix })
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn upper(&self) -> String {
        self.prefix.to_ascii_uppercase().replace('-', "_")
    }

    // === upstream ===

    /// Stream of upstream hints (limits retention, de-duplication window).
    pub fn upstream_stream(&self) -> String {
        format!("{}_UPSTREAM", self.upper())
    }

    /// Subjects the upstream stream captures.
    pub fn upstream_subjects(&self) -> String {
        format!("{}.upstream.>", self.prefix)
    }

    /// Subject for a registry tag change.
    pub fn upstream_registry_subject(&self) -> String {
        format!("{}.upstream.registry", self.prefix)
    }

    /// Subject for a Git ref change.
    pub fn upstream_git_subject(&self) -> String {
        format!("{}.upstream.git", self.prefix)
    }

    /// Subject for a package feed index change.
    pub fn upstream_feed_subject(&self) -> String {
        format!("{}.upstream.feed", self.prefix)
    }

    /// Subject of operator requests (rebuild, pause, resume) from the control API.
    pub fn upstream_manual_subject(&self) -> String {
        format!("{}.upstream.manual", self.prefix)
    }

    /// Subject of advisory fix hints (from the scanner).
    pub fn upstream_advisory_subject(&self) -> String {
        format!("{}.upstream.advisory", self.prefix)
    }

    /// Durable consumer of the resolver on the upstream stream.
    pub fn resolver_upstream_consumer(&self) -> String {
        "resolver-upstream".to_string()
    }

    // === queues ===

    /// Stream name of a work queue.
    pub fn queue_stream(&self, queue: Queue) -> String {
        format!("{}_{}", self.upper(), queue.stream_suffix())
    }

    /// Subjects a work queue captures.
    pub fn queue_subjects(&self, queue: Queue) -> String {
        format!("{}.queue.{}.>", self.prefix, queue.token())
    }

    /// Subject of one image's item in a work queue.
    pub fn queue_subject(&self, queue: Queue, image: &ImageName) -> String {
        format!("{}.queue.{}.{}", self.prefix, queue.token(), image.subject_tokens())
    }

    /// The durable consumer every worker of a queue shares.
    pub fn queue_consumer(&self, queue: Queue) -> String {
        format!("{}-workers", queue.token())
    }

    // === events ===

    /// Stream of everything that happened (limits retention), for watch and audit.
    pub fn events_stream(&self) -> String {
        format!("{}_EVENTS", self.upper())
    }

    /// Subjects the events stream captures.
    pub fn events_subjects(&self) -> String {
        format!("{}.events.>", self.prefix)
    }

    /// Subject of one event about one image (`kind` from [`crate::EventKind::token`]).
    pub fn event_subject(&self, kind_token: &str, image: Option<&ImageName>) -> String {
        match image {
            Some(image) => format!("{}.events.{kind_token}.{}", self.prefix, image.subject_tokens()),
            None => format!("{}.events.{kind_token}._", self.prefix),
        }
    }

    /// Durable consumer of the resolver on the events stream.
    pub fn resolver_events_consumer(&self) -> String {
        "resolver-events".to_string()
    }

    // === dead letters ===

    /// Stream of messages that failed too often or could not be understood.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}_DEADLETTER", self.upper())
    }

    /// Subjects the dead-letter stream captures.
    pub fn dead_letter_subjects(&self) -> String {
        format!("{}.deadletter.>", self.prefix)
    }

    /// Dead-letter subject for messages of `stream`.
    pub fn dead_letter_subject(&self, stream: &str) -> String {
        format!("{}.deadletter.{}", self.prefix, stream.to_ascii_lowercase())
    }

    // === state ===

    /// KV bucket name.
    pub fn bucket(&self, bucket: Bucket) -> String {
        format!("{}_{}", self.prefix.replace('-', "_"), bucket.token())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_prefixed() {
        let names = Names::new("rb-test1").unwrap();
        let image = ImageName::new("apps/web").unwrap();
        assert_eq!(names.queue_stream(Queue::Build), "RB_TEST1_BUILD");
        assert_eq!(
            names.queue_subject(Queue::Build, &image),
            "rb-test1.queue.build.apps.web"
        );
        assert_eq!(names.bucket(Bucket::Images), "rb_test1_images");
        assert_eq!(
            names.event_subject("build-done", Some(&image)),
            "rb-test1.events.build-done.apps.web"
        );
        assert!(
            names
                .queue_subject(Queue::Scan, &image)
                .starts_with(&names.queue_subjects(Queue::Scan)[..names.queue_subjects(Queue::Scan).len() - 1])
        );
    }

    #[test]
    fn bad_prefixes() {
        for bad in ["", "Rebake", "1abc", "a.b", "a b", "a>", &"a".repeat(33)] {
            assert!(Names::new(bad).is_err(), "{bad:?} accepted");
        }
    }
}
