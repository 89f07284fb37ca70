package sample

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"
)

// The generator's fixed inputs. Changing any of them changes the data, and
// the golden test then asks for `go generate ./internal/sample`.
const (
	seed1, seed2 = 20260615, 11643
	numDrivers   = 200
	numSlots     = 60
	numBookings  = 80
)

// asOf is the date the sample data describes: licences valid until before
// it are expired, violations and bookings happened before it, exam slots
// lie after it.
var asOf = time.Date(2026, 6, 15, 0, 0, 0, 0, time.UTC)

// region is an administrative area: the first six digits of its residents'
// ID numbers, and the plate prefixes and road names of its city.
type region struct {
	code   string
	plates []string // province character + issuing-office letter
	places []string
}

var regions = []region{
	{"110101", []string{"京A", "京B", "京C", "京E", "京F"}, []string{"东长安街与东单北大街交叉口", "东二环建国门桥北", "朝阳门内大街"}},
	{"110105", []string{"京A", "京G", "京H", "京J", "京K", "京N"}, []string{"东三环中路国贸桥南", "朝阳北路青年路口", "京承高速望京出口"}},
	{"110108", []string{"京A", "京L", "京M", "京P", "京Q"}, []string{"北四环中路学院桥", "中关村大街与海淀桥交叉口", "京藏高速清河收费站"}},
	{"310104", []string{"沪A", "沪B", "沪C", "沪D"}, []string{"延安高架路虹许路匝道", "中山南二路龙华中路", "漕溪北路与南丹路交叉口"}},
	{"310115", []string{"沪A", "沪E", "沪F", "沪G", "沪H"}, []string{"世纪大道与张杨路交叉口", "杨高中路罗山路立交", "外环高速申江路出口"}},
	{"440305", []string{"粤B"}, []string{"深南大道与科技园路交叉口", "沙河西路与白石路交叉口", "南海大道后海段"}},
	{"440106", []string{"粤A"}, []string{"天河路与体育西路交叉口", "广州大道中华南师大段", "黄埔大道西"}},
	{"330106", []string{"浙A"}, []string{"文三路与学院路交叉口", "天目山路西溪路口", "曙光路与杭大路交叉口"}},
	{"320102", []string{"苏A"}, []string{"中山路与珠江路交叉口", "北京东路鸡鸣寺段", "龙蟠路玄武门段"}},
	{"510104", []string{"川A"}, []string{"人民南路四段", "东大街与红星路交叉口", "二环路东五段"}},
	{"420106", []string{"鄂A"}, []string{"中南路与武珞路交叉口", "中北路东湖路口", "武昌长江大桥引桥"}},
}

var (
	surnames = []string{"王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡", "郭", "何", "高", "林", "罗", "郑", "梁", "谢", "宋", "唐"}
	// Given-name characters, more often seen in men's and women's names.
	givenM  = []string{"伟", "强", "磊", "军", "洋", "勇", "杰", "涛", "明", "超", "刚", "浩", "宇", "晨", "子", "文", "建", "国", "华", "志", "海", "俊", "鹏", "斌"}
	givenF  = []string{"芳", "娜", "敏", "静", "丽", "艳", "娟", "兰", "霞", "婷", "欣", "佳", "华", "红", "玉", "雪", "琳", "慧", "颖", "倩", "晨", "文"}
	mobiles = []string{"130", "133", "135", "137", "138", "139", "150", "151", "158", "177", "186", "188", "189", "199"}
	// plateLetters are the letters a plate may carry: no I and no O, which
	// read as 1 and 0.
	plateLetters = "ABCDEFGHJKLMNPQRSTUVWXYZ"
	brands       = []string{"大众", "丰田", "本田", "别克", "日产", "吉利", "长安", "哈弗", "奔驰", "宝马", "奥迪"}
	evBrands     = []string{"比亚迪", "特斯拉", "蔚来", "理想", "小鹏", "广汽埃安"}
	colours      = []string{"白", "黑", "银", "灰", "红", "蓝"}
	centres      = []string{"北京市机动车驾驶人考试中心（北苑考场）", "上海市公安局交警总队车管所考试中心（浦东）", "深圳市车辆管理所南山考场", "广州市车辆管理所天河考场", "杭州市公安局交警支队车管所考试中心", "成都市公安局交管局车管所考试中心"}
	startTimes   = []string{"08:30", "10:00", "13:30", "15:00"}
)

// licenceClass is a permitted-class code and how often it occurs.
type licenceClass struct {
	code   string
	weight int
}

var classes = []licenceClass{{"C1", 60}, {"C2", 14}, {"C1E", 4}, {"B2", 8}, {"B1", 3}, {"A1", 4}, {"A2", 5}, {"A1A2", 2}}

// violationKind is one entry of the violation code table.
type violationKind struct {
	code        string
	description string
	fine        int // yuan
	points      int
}

var violationKinds = []violationKind{
	{"1039", "机动车违反规定停放、临时停车且驾驶人不在现场，妨碍其他车辆、行人通行的", 200, 0},
	{"1625", "驾驶机动车违反道路交通信号灯通行的", 200, 6},
	{"1352", "驾驶机动车在城市道路以外的道路上行驶超过规定时速百分之二十以上未达到百分之五十的", 200, 6},
	{"1344", "驾驶机动车在城市道路上行驶超过规定时速百分之十以上未达到百分之二十的", 50, 1},
	{"1357", "驾驶机动车行经人行横道，不按规定减速、停车、避让行人的", 200, 3},
	{"1223", "驾驶机动车有拨打、接听手持电话等妨碍安全驾驶的行为的", 50, 3},
	{"1240", "驾驶人未按规定使用安全带的", 50, 1},
	{"1208", "驾驶机动车不按所需行进方向驶入导向车道的", 100, 1},
	{"1345", "驾驶机动车违反禁令标志指示的", 100, 3},
	{"1301", "驾驶机动车违反规定使用专用车道的", 200, 3},
}

type driver struct {
	idNumber, name, gender, birthDate, mobile, regionCode string
	region                                                *region
}

type licence struct {
	idNumber, fileNo, class, status string
	points                          int
	issuedOn, validUntil            string
}

type vehicle struct {
	plate, kind, owner, vehicleType, brand, colour, registeredOn, inspectBy string
	region                                                                  *region
}

type violation struct {
	id                                    int
	plate, occurredAt, place, code, descr string
	fine, points, paid                    int
}

type slot struct {
	id                        int
	date, start, centre       string
	subject, capacity, booked int
}

type appointment struct {
	id        int
	slotID    int
	idNumber  string
	createdAt string
}

// dataset is the whole generated replica content.
type dataset struct {
	drivers      []driver
	licences     []licence
	vehicles     []vehicle
	violations   []violation
	slots        []slot
	appointments []appointment
	citizens     []Citizen
}

// generate builds the sample data from a fixed seed. It is deterministic:
// the same code yields the same data, which testdata/sample records.
func generate() *dataset {
	r := rand.New(rand.NewPCG(seed1, seed2))
	d := &dataset{}
	d.genDrivers(r)
	d.genLicences(r)
	d.genVehicles(r)
	d.genViolations(r)
	d.genSlots(r)
	d.pickCitizens()
	d.genAppointments(r)
	return d
}

func (d *dataset) genDrivers(r *rand.Rand) {
	seen := map[string]bool{}
	for len(d.drivers) < numDrivers {
		reg := &regions[r.IntN(len(regions))]
		birth := date(1956, 1, 1).AddDate(0, 0, r.IntN(days(date(1956, 1, 1), date(2007, 12, 31))))
		male := r.IntN(2) == 0
		seq := r.IntN(500)*2 + 1 // odd for men
		if !male {
			seq--
		}
		body := reg.code + birth.Format("20060102") + fmt.Sprintf("%03d", seq)
		id := body + string(checkDigit(body))
		if seen[id] {
			continue
		}
		seen[id] = true
		given := givenM
		if !male {
			given = givenF
		}
		name := surnames[r.IntN(len(surnames))] + given[r.IntN(len(given))]
		if r.IntN(3) > 0 {
			name += given[r.IntN(len(given))]
		}
		gender := "M"
		if !male {
			gender = "F"
		}
		d.drivers = append(d.drivers, driver{
			idNumber: id, name: name, gender: gender, birthDate: birth.Format(time.DateOnly),
			mobile:     mobiles[r.IntN(len(mobiles))] + fmt.Sprintf("%08d", r.IntN(100000000)),
			regionCode: reg.code, region: reg,
		})
	}
}

func (d *dataset) genLicences(r *rand.Rand) {
	files := map[string]bool{}
	for _, dr := range d.drivers {
		// About one person in ten is still an exam candidate.
		if r.IntN(10) == 0 {
			continue
		}
		birth, _ := time.Parse(time.DateOnly, dr.birthDate)
		earliest := birth.AddDate(18, 0, 0)
		latest := asOf.AddDate(0, -1, 0)
		first := earliest.AddDate(0, 0, r.IntN(max(1, days(earliest, latest))))
		// Periods of validity run 6 years, then 10, then 10 again in this
		// sample; the current period is the one covering asOf, or the last
		// one if the holder never renewed.
		issued, until := first, first.AddDate(6, 0, 0)
		for until.Before(asOf) && r.IntN(5) > 0 {
			issued, until = until, until.AddDate(10, 0, 0)
		}
		var fileNo string
		for fileNo == "" || files[fileNo] {
			fileNo = dr.regionCode[:4] + fmt.Sprintf("%08d", r.IntN(100000000))
		}
		files[fileNo] = true
		points := 0
		if r.IntN(5) < 2 {
			points = 1 + r.IntN(11)
			if r.IntN(15) == 0 {
				points = 12
			}
		}
		status := "normal"
		switch {
		case until.Before(asOf):
			status = "expired"
		case points == 12 || r.IntN(40) == 0:
			status = "suspended"
		}
		d.licences = append(d.licences, licence{
			idNumber: dr.idNumber, fileNo: fileNo, class: pickClass(r), status: status, points: points,
			issuedOn: issued.Format(time.DateOnly), validUntil: until.Format(time.DateOnly),
		})
	}
}

func pickClass(r *rand.Rand) string {
	total := 0
	for _, c := range classes {
		total += c.weight
	}
	n := r.IntN(total)
	for _, c := range classes {
		if n < c.weight {
			return c.code
		}
		n -= c.weight
	}
	return classes[0].code
}

func (d *dataset) genVehicles(r *rand.Rand) {
	seen := map[string]bool{}
	byID := d.driverIndex()
	for _, l := range d.licences {
		n := 0
		switch x := r.IntN(20); {
		case x < 3:
			n = 0
		case x < 17:
			n = 1
		default:
			n = 2
		}
		dr := d.drivers[byID[l.idNumber]]
		for range n {
			var v vehicle
			for v.plate == "" || seen[v.plate] {
				v = newVehicle(r, dr)
			}
			seen[v.plate] = true
			d.vehicles = append(d.vehicles, v)
		}
	}
}

// newVehicle makes a vehicle registered where its owner lives. Ordinary
// plates are prefix + five characters with at most two letters; small
// new-energy plates are prefix + D or F + a letter or digit + four digits.
func newVehicle(r *rand.Rand, dr driver) vehicle {
	reg := dr.region
	prefix := reg.plates[r.IntN(len(reg.plates))]
	letter := func() byte { return plateLetters[r.IntN(len(plateLetters))] }
	digit := func() byte { return byte('0' + r.IntN(10)) }
	v := vehicle{owner: dr.idNumber, colour: colours[r.IntN(len(colours))], region: reg}
	var tail []byte
	if r.IntN(100) < 18 {
		v.kind, v.vehicleType, v.brand = "new_energy", "小型轿车（纯电动）", evBrands[r.IntN(len(evBrands))]
		tail = []byte{"DF"[r.IntN(2)], digit()}
		if r.IntN(2) == 0 {
			tail[1] = letter()
		}
		for range 4 {
			tail = append(tail, digit())
		}
	} else {
		v.kind, v.vehicleType, v.brand = "small", []string{"小型轿车", "小型普通客车", "小型越野客车"}[r.IntN(3)], brands[r.IntN(len(brands))]
		tail = []byte{digit(), digit(), digit(), digit(), digit()}
		for range r.IntN(3) {
			tail[r.IntN(5)] = letter()
		}
	}
	v.plate = prefix + string(tail)
	reg0 := date(2008, 1, 1)
	registered := reg0.AddDate(0, 0, r.IntN(days(reg0, asOf.AddDate(0, -2, 0))))
	v.registeredOn = registered.Format(time.DateOnly)
	// Inspection falls due on the registration anniversary after asOf.
	due := time.Date(asOf.Year(), registered.Month(), registered.Day(), 0, 0, 0, 0, time.UTC)
	if due.Before(asOf) {
		due = due.AddDate(1, 0, 0)
	}
	v.inspectBy = due.Format(time.DateOnly)
	return v
}

func (d *dataset) genViolations(r *rand.Rand) {
	from := date(2024, 1, 1)
	for _, v := range d.vehicles {
		if r.IntN(5) < 2 {
			continue
		}
		n := 1 + r.IntN(4)
		for range n {
			k := violationKinds[r.IntN(len(violationKinds))]
			at := from.AddDate(0, 0, r.IntN(days(from, asOf))).Add(time.Duration(7*60+r.IntN(16*60)) * time.Minute)
			paid := 0
			// Old fines are mostly paid; recent ones mostly not yet.
			if asOf.Sub(at) > 90*24*time.Hour && r.IntN(10) < 8 {
				paid = 1
			}
			d.violations = append(d.violations, violation{
				id: len(d.violations) + 1, plate: v.plate, occurredAt: at.Format("2006-01-02 15:04"),
				place: v.region.places[r.IntN(len(v.region.places))], code: k.code, descr: k.description,
				fine: k.fine, points: k.points, paid: paid,
			})
		}
	}
}

func (d *dataset) genSlots(r *rand.Rand) {
	day := asOf.AddDate(0, 0, 14)
	for len(d.slots) < numSlots {
		day = day.AddDate(0, 0, 1)
		if wd := day.Weekday(); wd == time.Saturday || wd == time.Sunday {
			continue
		}
		for _, st := range startTimes[:2+r.IntN(3)] {
			if len(d.slots) == numSlots {
				break
			}
			subject := 1 + len(d.slots)%4
			capacity := 20 + 10*r.IntN(4)
			if subject == 2 || subject == 3 {
				capacity = 10 + 2*r.IntN(5) // practical tests take fewer candidates
			}
			d.slots = append(d.slots, slot{
				id: len(d.slots) + 1, date: day.Format(time.DateOnly), start: st,
				centre: centres[r.IntN(len(centres))], subject: subject, capacity: capacity,
			})
		}
	}
}

// pickCitizens chooses the people Citizens returns: licence holders in good
// standing with a vehicle that has violations, the first with an unpaid
// one.
func (d *dataset) pickCitizens() {
	lic := map[string]licence{}
	for _, l := range d.licences {
		lic[l.idNumber] = l
	}
	unpaid, some := map[string]bool{}, map[string]bool{}
	for _, v := range d.violations {
		some[v.plate] = true
		if v.paid == 0 {
			unpaid[v.plate] = true
		}
	}
	byID := d.driverIndex()
	taken := map[string]bool{}
	for _, want := range []map[string]bool{unpaid, some, some} {
		for _, v := range d.vehicles {
			if !want[v.plate] || taken[v.owner] || lic[v.owner].status != "normal" {
				continue
			}
			taken[v.owner] = true
			dr := d.drivers[byID[v.owner]]
			d.citizens = append(d.citizens, Citizen{Name: dr.name, IDNumber: dr.idNumber, Plate: v.plate})
			break
		}
	}
}

// genAppointments books other people into slots, leaving every slot at
// least minFree places so demos and tests can always book.
func (d *dataset) genAppointments(r *rand.Rand) {
	const minFree = 6
	skip := map[string]bool{}
	for _, c := range d.citizens {
		skip[c.IDNumber] = true
	}
	booked := map[[2]string]bool{}
	at := asOf.AddDate(0, 0, -10)
	for len(d.appointments) < numBookings {
		s := &d.slots[r.IntN(len(d.slots))]
		dr := d.drivers[r.IntN(len(d.drivers))]
		key := [2]string{fmt.Sprint(s.id), dr.idNumber}
		if skip[dr.idNumber] || booked[key] || s.capacity-s.booked <= minFree {
			continue
		}
		booked[key] = true
		s.booked++
		at = at.Add(time.Duration(1+r.IntN(180)) * time.Minute)
		d.appointments = append(d.appointments, appointment{
			id: len(d.appointments) + 1, slotID: s.id, idNumber: dr.idNumber, createdAt: at.Format("2006-01-02T15:04:05Z"),
		})
	}
}

func (d *dataset) driverIndex() map[string]int {
	m := make(map[string]int, len(d.drivers))
	for i, dr := range d.drivers {
		m[dr.idNumber] = i
	}
	return m
}

// checkDigit returns the GB 11643-1999 check character of the first 17
// digits of a resident ID number: weights 2^(17-i) mod 11, and the
// character for (12 - sum mod 11) mod 11, with 10 written X.
func checkDigit(body string) byte {
	weights := [17]int{7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2}
	sum := 0
	for i := range 17 {
		sum += int(body[i]-'0') * weights[i]
	}
	return "10X98765432"[sum%11]
}

func date(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

func days(from, to time.Time) int { return int(to.Sub(from).Hours() / 24) }

// render writes the dataset as SQL INSERT statements, in batches of
// rowsPerInsert rows, readable and loadable with the sqlite3 shell.
func (d *dataset) render() []byte {
	var b strings.Builder
	b.WriteString("-- ferry sample replica data: generated by `go run ./internal/sample/gen`; do not edit.\n")
	b.WriteString("-- Synthetic people: names, ID numbers, plates and phone numbers are made up.\n")
	t := func(name, cols string, n int, row func(i int) []string) {
		fmt.Fprintf(&b, "\n-- %s: %d rows\n", name, n)
		for i := range n {
			if i%rowsPerInsert == 0 {
				fmt.Fprintf(&b, "INSERT INTO %s (%s) VALUES\n", name, cols)
			}
			b.WriteString("  (")
			for j, v := range row(i) {
				if j > 0 {
					b.WriteString(", ")
				}
				b.WriteString(v)
			}
			if i%rowsPerInsert == rowsPerInsert-1 || i == n-1 {
				b.WriteString(");\n")
			} else {
				b.WriteString("),\n")
			}
		}
	}
	t("drivers", "id_number, name, gender, birth_date, mobile, region_code", len(d.drivers), func(i int) []string {
		x := d.drivers[i]
		return []string{str(x.idNumber), str(x.name), str(x.gender), str(x.birthDate), str(x.mobile), str(x.regionCode)}
	})
	t("licences", "id_number, file_no, class, status, points, issued_on, valid_until", len(d.licences), func(i int) []string {
		x := d.licences[i]
		return []string{str(x.idNumber), str(x.fileNo), str(x.class), str(x.status), num(x.points), str(x.issuedOn), str(x.validUntil)}
	})
	t("vehicles", "plate, plate_kind, owner, vehicle_type, brand, colour, registered_on, inspect_by", len(d.vehicles), func(i int) []string {
		x := d.vehicles[i]
		return []string{str(x.plate), str(x.kind), str(x.owner), str(x.vehicleType), str(x.brand), str(x.colour), str(x.registeredOn), str(x.inspectBy)}
	})
	t("violations", "id, plate, occurred_at, place, code, description, fine_yuan, points, paid", len(d.violations), func(i int) []string {
		x := d.violations[i]
		return []string{num(x.id), str(x.plate), str(x.occurredAt), str(x.place), str(x.code), str(x.descr), num(x.fine), num(x.points), num(x.paid)}
	})
	t("exam_slots", "id, exam_date, start_time, centre, subject, capacity", len(d.slots), func(i int) []string {
		x := d.slots[i]
		return []string{num(x.id), str(x.date), str(x.start), str(x.centre), num(x.subject), num(x.capacity)}
	})
	t("appointments", "id, slot_id, id_number, created_at", len(d.appointments), func(i int) []string {
		x := d.appointments[i]
		return []string{num(x.id), num(x.slotID), str(x.idNumber), str(x.createdAt)}
	})
	return []byte(b.String())
}

const rowsPerInsert = 100

// str renders a string as an SQL literal.
func str(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }

// num renders an integer as an SQL literal.
func num(n int) string { return strconv.Itoa(n) }
