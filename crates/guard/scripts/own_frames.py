#!/usr/bin/env python3
"""Development check of generalisation: renders carrier sentences written for
Hearth (not the generator's frame sets A/B) with the generator's *value*
functions, so the detector meets known value formats in unseen contexts.

    python3 own_frames.py --gen /work/shared/pii/pii_gen.py --seed 1 --n 1000 > own.jsonl

Only values are taken from the generator; nothing here feeds the detector's
word lists.
"""
import argparse
import importlib.util
import json
import random

FRAMES = [
    "From: {PERSON} <{EMAIL}>\nTo: support\nSubject: refund\n\nI was charged twice on {CARD}. Regards, {PERSON}",
    "Can you summarise this note? '{PERSON} ({DOB}) was seen today, hospital number {MRN}, lives at {ADDRESS}.'",
    "name: {PERSON}\nemail: {EMAIL}\nphone: {PHONE}\n",
    "Translate to French: my name is {PERSON} and my mobile is {PHONE}.",
    "Draft a reply to {PERSON}, who wrote from {EMAIL} asking about invoice {invoice}.",
    "The new hire, {PERSON}, needs a laptop; ship it to {ADDRESS}.",
    "Why does curl to {IP} time out? Using token {APIKEY} in the header.",
    "Please verify: holder {PERSON}, IBAN {IBAN}, amount {amount}.",
    "Spreadsheet row: {PERSON}\t{SSN}\t{PHONE}",
    "Is {SSN} a valid SSN format? Asking for my tax form.",
    "Patient: {PERSON}. D.O.B. {DOB}. Medical record #: {MRN}. Chief complaint: {symptom}.",
    "I need to renew passport {PASSPORT} before my trip on {date}; born {DOB}.",
    "log line: user={EMAIL} ip={IP} status=403",
    "Hey it's {PERSON}! new number {PHONE}, save it",
    "Write a cover letter for {PERSON}, {ADDRESS}, {EMAIL}.",
    "Our client {PERSON} (SSN {SSN}) disputes the charge of {amount} on card {CARD}.",
    "Config:\nAPI_KEY={APIKEY}\nHOST={IP}",
    "Billing contact {PERSON} can be reached at {PHONE} or {EMAIL}.",
    "Meeting notes {date}: {PERSON} will follow up with procurement about {topic}.",
    "{{\"customer\": \"{PERSON}\", \"iban\": \"{IBAN}\", \"dob\": \"{DOB}\"}}",
    "Forward the lab report for MRN {MRN} to {EMAIL} by {weekday}.",
    "Passport: {PASSPORT}\nNationality: {country}\nHolder: {PERSON}",
    "The tenant {PERSON} has not paid rent for the flat at {ADDRESS} since {date}.",
    "What's the weather like in {city} next {weekday}?",
    "Summarise the {topic} discussion for the {department} team.",
    "Deploy {version} to {hostname} after {time}; ticket {ticket}.",
    "Compare plans {plan} and enterprise for {n} seats at {amount} each.",
    "Order {order}: {qty} x {product}, delivery window {time}-{time}.",
    "Invoice {invoice} ({amount}) is overdue by {n} days.",
    "Flight {flight} seat {seat} gate {gate}, boarding {time}.",
]


# A second set, written after the detector was tuned on FRAMES and measured
# once, untuned, as an estimate for unseen carrier sentences.
FRAMES_HOLDOUT = [
    "Hi, this is {PERSON}. I'm locked out; the account is under {EMAIL}.",
    "Please update the records: {PERSON}, date of birth {DOB}, new address {ADDRESS}.",
    "Minutes: attendees {PERSON}, {PERSON} and {PERSON}. Action: {topic}.",
    "Refund request from {PERSON} for order {order}; refund to {IBAN}.",
    "Rotate the key {APIKEY} — it was pasted into {service} logs by {EMAIL}.",
    "grep showed failed logins from {IPV6} and {IPV4} on {hostname}.",
    "Insurance form: insured {PERSON}; SSN {SSN}; phone {PHONE}; policy {case_no}.",
    "Reminder for {PERSON}: your appointment on {date} at {time}. Reply to {PHONE} to cancel.",
    "The courier could not find {ADDRESS}; please call {PERSON} on {PHONE}.",
    "Our records show passport {PASSPORT} expired; holder born {DOB}.",
    "Paste from CRM -> Name: {PERSON} | Card: {CARD} | Email: {EMAIL}",
    "Hospital transfer: MRN {MRN}, patient {PERSON}, DOB {DOB}, allergies {allergy}.",
    "dear {PERSON}, thanks for your order, it ships to {ADDRESS} on {weekday}.",
    "Wire {amount} from {IBAN} to {IBAN} today please.",
    "Quarterly report for the {department} team is due {date}; ping {EMAIL} with questions.",
    "Server {hostname} at {IP} needs a restart after {version}.",
    "Can you check if {CARD} is a valid card number? It was declined.",
    "Update emergency contact: {PERSON}, {PHONE}, lives at {ADDRESS}.",
    "Product {product} restocked; {qty} units at {amount}.",
    "Team offsite in {city} on {date}; budget {amount}; rooms {n}.",
]


# A third set, measured once after the fixes prompted by FRAMES_HOLDOUT.
FRAMES_HOLDOUT2 = [
    "Subject: Re: claim\n{PERSON} wrote:\n> my card {CARD} was charged {amount}\nWe will refund it within {n} days.",
    "Applicant {PERSON}, passport no {PASSPORT}, born {DOB}, resident at {ADDRESS}.",
    "- name: {PERSON}\n  mail: {EMAIL}\n  tel: {PHONE}",
    "Who is {PERSON}? Their IBAN {IBAN} shows up in our ledger next to {company}.",
    "Escalate to {PERSON} ({EMAIL}); customer IP {IP}; key {APIKEY}.",
    "Chart note: pt. {PERSON}, MRN# {MRN}, dob {DOB}. Follow-up {date}.",
    "Kindly send the W-2 for {PERSON} (SSN {SSN}) to {ADDRESS}.",
    "thx {PERSON}! pls text {PHONE} when ur outside",
    "Transfer approved: {amount} to {IBAN}, beneficiary {PERSON}, ref {case_no}.",
    "Audit: {hostname} accepted {IPV4} and {IPV6} between {time} and {time}.",
    "Hello, I am {PERSON}, my date of birth is {DOB} and my SSN is {SSN}.",
    "Book {qty} rooms at {company} for the {topic} workshop on {date}.",
    "Ticket {ticket}: printer on floor {n} is jammed again.",
    "Please reset MFA for {EMAIL}; last login from {IP} on {date}.",
    "Courier note: deliver to {PERSON}, {ADDRESS}, call {PHONE} on arrival.",
]


# A third hold-out, written last and measured once, untuned: the report's
# estimate for unseen carrier sentences.
FRAMES_HOLDOUT3 = [
    "Could you proofread this? 'Dear {PERSON}, we received your payment from {IBAN}. Kind regards, {company}'",
    "I'm {PERSON}, reachable on {PHONE}; my flat is {ADDRESS}.",
    "Why was {EMAIL} rate-limited from {IP} at {time}?",
    "Emergency form — child: {PERSON}; parent: {PERSON}; doctor's phone {PHONE}; DOB {DOB}.",
    "Lease signed by {PERSON} on {date} for {ADDRESS}; deposit {amount} paid by card {CARD}.",
    "Revoke {APIKEY} now, then email {EMAIL}.",
    "SSN on file for {PERSON} is {SSN}, please confirm before {weekday}.",
    "Add {PERSON} to the {department} channel, start date {date}.",
    "Visa interview: {PERSON}, passport {PASSPORT}, born {DOB}.",
    "Lab order for MRN {MRN}: {lab}; notify {PERSON} at {EMAIL}.",
    "{company} and {company} signed the {matter} agreement on {date}.",
    "The {department} budget for {city} is {amount}; review on {weekday} at {time}.",
    "Patch {version} rolled out to {hostname}; {pct}% of nodes healthy.",
    "Our {plan} plan costs {amount} per seat; invoice {invoice} attached.",
    "Train to {city} leaves at {time}; meet {company} reps at gate {gate}.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gen", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--holdout", type=int, default=0, help="1: FRAMES_HOLDOUT, 2: FRAMES_HOLDOUT2, 3: FRAMES_HOLDOUT3")
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("pii_gen", a.gen)
    g = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(g)
    rng = random.Random(f"hearth-own-{a.seed}")
    for i in range(a.n):
        frame = rng.choice([FRAMES, FRAMES_HOLDOUT, FRAMES_HOLDOUT2, FRAMES_HOLDOUT3][a.holdout])
        text, ents = g.render(frame, rng, shout=rng.random() < 0.03)
        print(json.dumps({"id": f"own-{a.seed}-{i:05d}", "text": text, "entities": ents}, ensure_ascii=False))


if __name__ == "__main__":
    main()
