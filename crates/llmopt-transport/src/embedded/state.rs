use std::collections::{BTreeMap, HashMap};

use crate::TopicPartition;

pub(crate) struct Record {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    pub timestamp_ms: Option<i64>,
}

#[derive(Default)]
pub(crate) struct State {
    pub topics: HashMap<String, Vec<Vec<Record>>>,
    pub groups: HashMap<String, Group>,
    round_robin: HashMap<String, i32>,
    next_member: u64,
}

#[derive(Default)]
pub(crate) struct Group {
    /// Bumped on every membership or topic change; members re-sync to it.
    pub generation: u64,
    pub members: BTreeMap<u64, Member>,
    pub committed: HashMap<TopicPartition, i64>,
}

pub(crate) struct Member {
    pub topics: Vec<String>,
    /// Generation whose revocation this member has completed.
    pub synced: u64,
}

impl State {
    /// Creates the topic if missing and returns its partition count.
    pub fn create_topic(&mut self, name: &str, partitions: i32) -> i32 {
        if let Some(parts) = self.topics.get(name) {
            return parts.len() as i32;
        }
        let partitions = partitions.max(1);
        self.topics.insert(
            name.to_string(),
            (0..partitions).map(|_| Vec::new()).collect(),
        );
        for group in self.groups.values_mut() {
            if group
                .members
                .values()
                .any(|m| m.topics.iter().any(|t| t == name))
            {
                group.generation += 1;
            }
        }
        partitions
    }

    pub fn partition_mut(&mut self, topic: &str, partition: i32) -> &mut Vec<Record> {
        let parts = self.topics.entry(topic.to_string()).or_default();
        &mut parts[partition as usize]
    }

    pub fn next_round_robin(&mut self, topic: &str, partitions: i32) -> i32 {
        let counter = self.round_robin.entry(topic.to_string()).or_default();
        let partition = *counter % partitions;
        *counter = (*counter + 1) % partitions;
        partition
    }

    pub fn join(&mut self, group: &str, topics: &[String]) -> u64 {
        self.next_member += 1;
        let id = self.next_member;
        let group = self.groups.entry(group.to_string()).or_default();
        group.generation += 1;
        group.members.insert(
            id,
            Member {
                topics: topics.to_vec(),
                synced: 0,
            },
        );
        id
    }

    pub fn leave(&mut self, group: &str, member: u64) {
        if let Some(group) = self.groups.get_mut(group) {
            if group.members.remove(&member).is_some() {
                group.generation += 1;
            }
        }
    }

    /// Partitions `member` owns in the group's current generation: for each topic, its
    /// partitions dealt round-robin to the members subscribed to it, in member order.
    pub fn assignment(&self, group: &Group, member: u64) -> Vec<TopicPartition> {
        let Some(me) = group.members.get(&member) else {
            return Vec::new();
        };
        let mut topics = me.topics.clone();
        topics.sort();
        topics.dedup();
        let mut owned = Vec::new();
        for topic in topics {
            let subscribers: Vec<u64> = group
                .members
                .iter()
                .filter(|(_, m)| m.topics.contains(&topic))
                .map(|(id, _)| *id)
                .collect();
            let Some(index) = subscribers.iter().position(|id| *id == member) else {
                continue;
            };
            let partitions = self.topics.get(&topic).map_or(0, Vec::len) as i32;
            owned.extend(
                (0..partitions)
                    .filter(|p| *p as usize % subscribers.len() == index)
                    .map(|partition| TopicPartition {
                        topic: topic.clone(),
                        partition,
                    }),
            );
        }
        owned
    }
}
